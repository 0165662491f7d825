"""Decoding through an id -> bytes table, shared by the BPE and the byte tokenizer.

A tokenizer that mixes this in sets `self._table`: the bytes of every id, special tokens included.
"""

from __future__ import annotations

from collections.abc import Sequence

REPLACEMENT = "\ufffd".encode("utf-8")  # what an unknown id decodes to


class TableDecoder:
    _table: list[bytes]

    def token_bytes(self, i: int) -> bytes:
        """The bytes of id `i`; U+FFFD's bytes for an id outside the vocabulary."""
        return self._table[i] if 0 <= i < len(self._table) else REPLACEMENT

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        table, n = self._table, len(self._table)
        return b"".join(table[i] if 0 <= i < n else REPLACEMENT for i in ids)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; never raises (invalid UTF-8 and unknown ids become U+FFFD)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")
