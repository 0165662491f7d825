"""Token shards: flat little-endian uint16 / uint32 arrays in `.bin` files plus `index.json`.

    OUT/
      index.json          {"format": "llmfs-token-shards", "version": 1, "dtype": "uint16",
                           "shards": [{"file": "shard-00000.bin", "tokens": N}, ...], "total_tokens", "documents",
                           "vocab_size", "eot_id", "tokenizer_sha256"}
      shard-00000.bin     numpy.memmap(path, dtype=index["dtype"], mode="r") reads it; documents are the encoded
      shard-00001.bin     text followed by the end-of-text id, back to back, cut into shards of `shard_tokens`
                          (a document may continue into the next shard)

Written to `OUT.tmp/` and renamed to OUT when complete, so a crash never leaves a half-written OUT.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from llmfs.errors import DataError

from llmfs.data.shards import FORMAT, INDEX_FILE


def dtype_for(vocab_size: int) -> np.dtype:
    """uint16 while every id fits (vocab <= 65535 as the issue specifies), else uint32; little-endian."""
    return np.dtype("<u2") if vocab_size <= 65535 else np.dtype("<u4")


class ShardWriter:
    """`with ShardWriter(out, vocab_size, eot_id, sha, shard_tokens) as w: w.write(ids); w.end_document()`."""

    def __init__(self, out: str | Path, *, vocab_size: int, eot_id: int, tokenizer_sha256: str,
                 shard_tokens: int):
        self.out = Path(out)
        if self.out.exists():
            raise DataError(f"{self.out}: output already exists; choose another --out or delete it")
        self.tmp = self.out.with_name(self.out.name + ".tmp")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)  # left by an interrupted run of this same command
        self.tmp.mkdir(parents=True)
        self.dtype = dtype_for(vocab_size)
        self.meta = {"vocab_size": vocab_size, "eot_id": eot_id, "tokenizer_sha256": tokenizer_sha256}
        self.shard_tokens = shard_tokens
        self.shards: list[dict] = []
        self.documents = 0
        self._file = None
        self._in_shard = 0

    def __enter__(self) -> "ShardWriter":
        return self

    def _open_next(self) -> None:
        if self._file is not None:
            self._file.close()
        name = f"shard-{len(self.shards):05d}.bin"
        self._file = open(self.tmp / name, "wb")
        self.shards.append({"file": name, "tokens": 0})
        self._in_shard = 0

    def write(self, ids) -> None:
        """Append token ids (a list or an integer array)."""
        arr = np.asarray(ids, dtype=self.dtype)
        start = 0
        while start < len(arr):
            if self._file is None or self._in_shard >= self.shard_tokens:
                self._open_next()
            take = min(len(arr) - start, self.shard_tokens - self._in_shard)
            arr[start:start + take].tofile(self._file)
            self._in_shard += take
            self.shards[-1]["tokens"] += take
            start += take

    def end_document(self) -> None:
        self.write([self.meta["eot_id"]])
        self.documents += 1

    def __exit__(self, exc_type, *_) -> None:
        if self._file is not None:
            self._file.close()
        if exc_type is not None:
            shutil.rmtree(self.tmp)  # nothing half-written survives; the exception propagates
            return
        index = {"format": FORMAT, "version": 1, "dtype": self.dtype.name, "byteorder": "little",
                 "shards": self.shards, "total_tokens": sum(s["tokens"] for s in self.shards),
                 "documents": self.documents, **self.meta}
        (self.tmp / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
        os.replace(self.tmp, self.out)


def read_index(directory: str | Path) -> dict:
    """The index of a shard directory; DataError when it is not one."""
    from llmfs.data.shards import TokenShards

    return TokenShards(directory).index


def read_tokens(directory: str | Path) -> np.ndarray:
    """All tokens of a shard directory, concatenated (for tests and inspection)."""
    from llmfs.data.shards import TokenShards

    shards = TokenShards(directory)
    return shards.window(0, shards.num_tokens)
