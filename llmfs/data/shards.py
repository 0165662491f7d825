"""Token shards for pretraining: memmapped reads and batches that are a pure function of (seed, step).

A shard directory is what `llmfs tokenize encode` writes: `index.json` plus flat little-endian uint16 / uint32
`.bin` files (see `llmfs/tokenizer/shard_writer.py`). `TokenShards` maps them without loading them; a window
may cross from one shard into the next.

`batch_at(step)` draws the *global* batch of an optimizer step from `numpy.random.default_rng([seed, step])`:
for each row a source (by mixture weight) and a random window start. Every process computes the same global
batch and reads only its own rows, so

- resuming at step k continues exactly where the uninterrupted run would be (no data-loader state to save),
- N processes with the same global batch see exactly the rows one process would (DDP equivalence),
- the mixture of sources is deterministic and resumable.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from llmfs.errors import DataError

INDEX_FILE = "index.json"
FORMAT = "llmfs-token-shards"


class TokenShards:
    """A read-only view of one shard directory as one long token sequence."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        index_path = self.directory / INDEX_FILE
        if not index_path.is_file():
            raise DataError(f"{self.directory}: not a token shard directory (no {INDEX_FILE}); "
                            "make one with `llmfs tokenize encode`")
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{index_path}: not valid JSON ({e})") from None
        if index.get("format") != FORMAT:
            raise DataError(f"{index_path}: format is {index.get('format')!r}, expected {FORMAT!r}")
        self.index = index
        self.dtype = np.dtype(index["dtype"]).newbyteorder("<")
        self.arrays: list[np.ndarray] = []
        for shard in index["shards"]:
            path = self.directory / shard["file"]
            expected = shard["tokens"] * self.dtype.itemsize
            if not path.is_file() or path.stat().st_size != expected:
                raise DataError(f"{path}: missing or not {expected} bytes as {INDEX_FILE} says; re-encode")
            if shard["tokens"]:
                self.arrays.append(np.memmap(path, dtype=self.dtype, mode="r"))
        self.starts = np.cumsum([0] + [len(a) for a in self.arrays]).tolist()
        self.num_tokens = self.starts[-1]

    @property
    def vocab_size(self) -> int:
        return int(self.index["vocab_size"])

    @property
    def tokenizer_sha256(self) -> str:
        return str(self.index["tokenizer_sha256"])

    def window(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length) as int64, crossing shard boundaries as needed."""
        if start < 0 or start + length > self.num_tokens:
            raise IndexError(f"window [{start}, {start + length}) outside 0..{self.num_tokens}")
        out = np.empty(length, dtype=np.int64)
        filled = 0
        shard = bisect.bisect_right(self.starts, start) - 1
        while filled < length:
            offset = start + filled - self.starts[shard]
            take = min(length - filled, len(self.arrays[shard]) - offset)
            out[filled:filled + take] = self.arrays[shard][offset:offset + take]
            filled += take
            shard += 1
        return out


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """Which rows of the global batch this process reads: rows [rank * rows, (rank + 1) * rows)."""

    global_rows: int
    seq_len: int
    rank: int = 0
    world_size: int = 1

    @property
    def rows(self) -> int:
        return self.global_rows // self.world_size


def global_batch_index(step: int, seed: int, global_rows: int, seq_len: int, sizes: Sequence[int],
                       weights: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(source index, window start) for every row of step `step`'s global batch; a pure function."""
    rng = np.random.default_rng([seed, step])
    p = np.asarray(weights, dtype=np.float64)
    sources = rng.choice(len(sizes), size=global_rows, p=p / p.sum())
    limits = np.asarray(sizes, dtype=np.int64)[sources] - seq_len  # window of seq_len + 1 tokens must fit
    starts = (rng.random(global_rows) * limits).astype(np.int64)  # uniform in [0, limit)
    return sources, starts


def batch_at(step: int, seed: int, shards: Sequence[TokenShards], weights: Sequence[float],
             plan: BatchPlan) -> np.ndarray:
    """This process's rows of step `step`: int64 array (rows, seq_len + 1); inputs are [:, :-1], targets [:, 1:]."""
    sizes = [s.num_tokens for s in shards]
    for s, n in zip(shards, sizes):
        if n <= plan.seq_len:
            raise DataError(f"{s.directory}: holds {n} tokens, fewer than one window of {plan.seq_len + 1}; "
                            "add data or lower data.seq_len")
    sources, starts = global_batch_index(step, seed, plan.global_rows, plan.seq_len, sizes, weights)
    lo, hi = plan.rank * plan.rows, (plan.rank + 1) * plan.rows
    return np.stack([shards[src].window(int(start), plan.seq_len + 1)
                     for src, start in zip(sources[lo:hi], starts[lo:hi])])


def sequential_windows(shards: TokenShards, seq_len: int, max_windows: int | None = None) -> np.ndarray:
    """Non-overlapping windows from the start (for evaluation: every token scored once): (n, seq_len + 1)."""
    n = (shards.num_tokens - 1) // seq_len
    if max_windows is not None:
        n = min(n, max_windows)
    if n < 1:
        raise DataError(f"{shards.directory}: holds {shards.num_tokens} tokens, fewer than one window of "
                        f"{seq_len + 1}; add validation data or lower data.seq_len")
    return np.stack([shards.window(i * seq_len, seq_len + 1) for i in range(n)])
