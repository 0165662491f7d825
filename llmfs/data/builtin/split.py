"""Train / validation membership by content hash, shared by every built-in source.

A record belongs to the validation split when the sha256 of its key text falls in the lowest `valid_fraction`
of the hash space. Identical texts always land in the same split, so the splits can never share an example
(splitting by index would let a generator produce the same example on both sides).
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "valid")


def in_valid(text: str, valid_fraction: float) -> bool:
    h = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    return h < valid_fraction * 2**64


def wanted(text: str, split: str, valid_fraction: float) -> bool:
    """Whether a record keyed by `text` belongs to `split`."""
    return in_valid(text, valid_fraction) == (split == "valid")
