"""Token shards: windows across shard boundaries, batches as a pure function of (seed, step), rank slicing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmfs.data.shards import BatchPlan, TokenShards, batch_at, global_batch_index, sequential_windows
from llmfs.errors import DataError


def write_shards(path, tokens, shard_tokens, dtype="<u2"):
    path.mkdir(parents=True)
    arr = np.asarray(tokens, dtype=dtype)
    shards = []
    for i in range(0, len(arr), shard_tokens):
        name = f"shard-{len(shards):05d}.bin"
        arr[i:i + shard_tokens].tofile(path / name)
        shards.append({"file": name, "tokens": len(arr[i:i + shard_tokens])})
    (path / "index.json").write_text(json.dumps({
        "format": "llmfs-token-shards", "version": 1, "dtype": np.dtype(dtype).name, "shards": shards,
        "total_tokens": len(arr), "documents": 1, "vocab_size": 70000 if dtype == "<u4" else 1000,
        "eot_id": 0, "tokenizer_sha256": "ab"}))
    return TokenShards(path)


def test_windows_cross_shard_boundaries(tmp_path):
    s = write_shards(tmp_path / "a", range(100), shard_tokens=30)
    assert s.num_tokens == 100 and len(s.arrays) == 4
    np.testing.assert_array_equal(s.window(25, 20), np.arange(25, 45))
    np.testing.assert_array_equal(s.window(0, 100), np.arange(100))
    with pytest.raises(IndexError):
        s.window(90, 11)
    big = write_shards(tmp_path / "b", [0, 65536, 70000], shard_tokens=2, dtype="<u4")
    np.testing.assert_array_equal(big.window(0, 3), [0, 65536, 70000])


def test_batch_is_pure_function_of_seed_and_step(tmp_path):
    s = write_shards(tmp_path / "a", range(1000), shard_tokens=300)
    plan = BatchPlan(global_rows=8, seq_len=16)
    a = batch_at(5, 1, [s], [1.0], plan)
    assert a.shape == (8, 17) and a.dtype == np.int64
    np.testing.assert_array_equal(a, batch_at(5, 1, [s], [1.0], plan))
    assert not np.array_equal(a, batch_at(6, 1, [s], [1.0], plan))
    assert not np.array_equal(a, batch_at(5, 2, [s], [1.0], plan))
    # every row is a contiguous window (tokens are their own positions here)
    assert (np.diff(a, axis=1) == 1).all()


def test_ranks_read_disjoint_slices_of_the_same_global_batch(tmp_path):
    s = write_shards(tmp_path / "a", range(1000), shard_tokens=300)
    whole = batch_at(3, 0, [s], [1.0], BatchPlan(global_rows=8, seq_len=16))
    parts = [batch_at(3, 0, [s], [1.0], BatchPlan(global_rows=8, seq_len=16, rank=r, world_size=4))
             for r in range(4)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_mixture_weights_are_followed(tmp_path):
    a = write_shards(tmp_path / "a", [1] * 500, shard_tokens=500)
    b = write_shards(tmp_path / "b", [2] * 500, shard_tokens=500)
    rows = np.concatenate([batch_at(step, 0, [a, b], [0.8, 0.2], BatchPlan(64, 8))[:, 0] for step in range(50)])
    frac_a = (rows == 1).mean()
    assert 0.76 < frac_a < 0.84
    sources, starts = global_batch_index(0, 0, 1000, 8, [500, 500], [0.0, 1.0])
    assert (sources == 1).all() and starts.min() >= 0 and starts.max() <= 500 - 8 - 1


def test_sequential_windows_cover_tokens_once(tmp_path):
    s = write_shards(tmp_path / "a", range(50), shard_tokens=20)
    w = sequential_windows(s, 10)
    assert w.shape == (4, 11)
    np.testing.assert_array_equal(w[:, :-1].ravel(), np.arange(40))


def test_errors(tmp_path):
    with pytest.raises(DataError, match="not a token shard directory"):
        TokenShards(tmp_path)
    s = write_shards(tmp_path / "a", range(10), shard_tokens=5)
    with pytest.raises(DataError, match="holds 10 tokens, fewer than one window of 17"):
        batch_at(0, 0, [s], [1.0], BatchPlan(2, 16))
    (tmp_path / "a" / "shard-00001.bin").write_bytes(b"12")
    with pytest.raises(DataError, match="shard-00001.bin: missing or not 10 bytes"):
        TokenShards(tmp_path / "a")
