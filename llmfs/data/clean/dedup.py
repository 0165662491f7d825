"""Deduplication: exact (a hash of the normalised text) and near-duplicate (MinHash + banded LSH).

MinHash (Broder 1997): a document is the set of its word shingles (`shingle_size` consecutive lower-cased
words; a shorter document is one shingle). Each shingle is hashed once to 32 bits x (CRC-32: fast, and unlike
`hash()` independent of PYTHONHASHSEED, so signatures agree across processes and resumed runs), then by
`num_perm` functions of the multiply-add-shift family (Dietzfelbinger 1996), h_i(x) = ((a_i x + b_i) mod 2^64)
>> 32, with a_i, b_i uniform 64-bit values drawn from `random.Random(seed)`; it is 2-independent on 32-bit keys,
and numpy's wrapping uint64 arithmetic computes the mod 2^64 for free. (A "(a x + b) mod (2^61 - 1)" family
with small a and x, tried first, is nearly monotone in x: every h_i then picks the same minimum and the Jaccard
estimate is biased upwards; tests/data/test_clean_dedup.py checks estimated against exact Jaccard.) The
signature is the minimum of each h_i over the shingles (uint32); the share of equal entries of two signatures
estimates the Jaccard similarity of the shingle sets.

LSH (Leskovec, Rajaraman & Ullman, "Mining of Massive Datasets", ch. 3.4): the signature is cut into `bands`
bands of r = num_perm / bands rows; two documents sharing any band are candidates, which happens with
probability 1 - (1 - J^r)^bands, an S-curve whose midpoint is about (1 / bands)^(1 / r) (`lsh_threshold`). A
candidate is a near-duplicate when its estimated Jaccard with a kept document is >= `threshold`; the first
document seen is kept.

Memory: both indexes hold only kept documents: a 16-byte digest each for exact dedup, and for near dedup the
signature (num_perm x 4 bytes) plus one bucket entry per band. That is O(kept documents x (num_perm + bands)),
about 1.5 KiB per kept document at the defaults (Python objects included); the rest of the pipeline is constant
in the corpus size.
"""

from __future__ import annotations

import hashlib
import random
import re
import zlib
from typing import NamedTuple

from llmfs.data.clean.config import DedupConfig

_WORD = re.compile(r"\w+")


def exact_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def shingles(text: str, size: int) -> set[str]:
    ws = _WORD.findall(text.lower())
    if len(ws) <= size:
        return {" ".join(ws)} if ws else set()
    return {" ".join(ws[i:i + size]) for i in range(len(ws) - size + 1)}


class MinHasher:
    """Signatures of one seeded hash family (`num_perm` functions)."""

    def __init__(self, num_perm: int, shingle_size: int, seed: int):
        import numpy as np

        rng = random.Random(seed)
        self.np = np
        self.shingle_size = shingle_size
        self.a = np.array([rng.getrandbits(64) for _ in range(num_perm)], dtype=np.uint64)
        self.b = np.array([rng.getrandbits(64) for _ in range(num_perm)], dtype=np.uint64)

    def signature(self, text: str) -> bytes:
        """(num_perm,) uint32 minima as little-endian bytes; an empty document gets all-ones (matches nothing
        but another empty document, which the pipeline drops as "empty" before dedup)."""
        np = self.np
        grams = shingles(text, self.shingle_size)
        if not grams:
            return np.full(len(self.a), np.iinfo(np.uint32).max, dtype="<u4").tobytes()
        x = np.fromiter((zlib.crc32(g.encode("utf-8")) for g in grams), dtype=np.uint64, count=len(grams))
        h = (x[:, None] * self.a[None, :] + self.b[None, :]) >> np.uint64(32)  # (shingles, num_perm), wraps
        return h.min(axis=0).astype("<u4").tobytes()


def band_keys(signature: bytes, bands: int) -> tuple[int, ...]:
    """One 64-bit key per band (a hash of the band's rows)."""
    step = len(signature) // bands
    return tuple(int.from_bytes(hashlib.blake2b(signature[i * step:(i + 1) * step], digest_size=8).digest(),
                                "little") for i in range(bands))


def estimated_jaccard(a: bytes, b: bytes) -> float:
    import numpy as np

    x, y = np.frombuffer(a, dtype="<u4"), np.frombuffer(b, dtype="<u4")
    return float(np.count_nonzero(x == y)) / len(x)


def lsh_threshold(cfg: DedupConfig) -> float:
    """The Jaccard similarity at which a pair becomes a candidate with probability about 1/2."""
    return (1 / cfg.bands) ** (1 / (cfg.num_perm // cfg.bands))


class Match(NamedTuple):
    reason: str            # "exact_duplicate" or "near_duplicate"
    kept: int              # id of the kept document it duplicates (its line in clean.jsonl, from 0)
    jaccard: float         # estimated Jaccard with that document (1.0 for exact)


class Deduplicator:
    """Exact and near-duplicate indexes over the kept documents, in the order they were kept."""

    def __init__(self, cfg: DedupConfig):
        self.cfg = cfg
        self.exact: dict[bytes, int] = {}
        self.buckets: list[dict[int, int]] = [{} for _ in range(cfg.bands)]
        self.signatures: list[bytes] = []

    def check(self, key: bytes, signature: bytes, bands: tuple[int, ...]) -> Match | None:
        """Whether a document duplicates a kept one; the best near match when several qualify."""
        if self.cfg.exact and key in self.exact:
            return Match("exact_duplicate", self.exact[key], 1.0)
        if not self.cfg.near:
            return None
        best: Match | None = None
        for bucket, band in zip(self.buckets, bands):
            kept = bucket.get(band)
            if kept is None or (best is not None and kept == best.kept):
                continue
            j = estimated_jaccard(signature, self.signatures[kept])
            if j >= self.cfg.threshold and (best is None or j > best.jaccard):
                best = Match("near_duplicate", kept, j)
        return best

    def add(self, key: bytes, signature: bytes, bands: tuple[int, ...]) -> int:
        """Index a kept document; returns its id."""
        doc_id = len(self.signatures)
        self.exact.setdefault(key, doc_id)
        self.signatures.append(signature if self.cfg.near else b"")
        if self.cfg.near:
            for bucket, band in zip(self.buckets, bands):
                bucket.setdefault(band, doc_id)
        return doc_id
