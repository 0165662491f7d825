"""Smoke test of the generation benchmark at a tiny size: it runs and reports sane fields; timings are never
asserted."""

import importlib.util
import math

from llmfs.bench.generate import (SIZES, MatvecProbe, build, decode_rate, engine_slots, floor_matrix_rows,
                                  format_table, kv_bytes_per_step, last_level_cache_bytes, matvec_bandwidth,
                                  paired_utilization, run, summary)


def test_bench_generate_runs_on_a_tiny_size():
    hf = importlib.util.find_spec("transformers") is not None
    result = run(("tiny",), batches=(1, 2), repeats=1, hf=hf, bandwidth_rows=512, pairs=2, pair_seconds=0.02)
    engines = ["llmfs", "llmfs no-cache"] + (["transformers"] if hf else [])
    assert [(r["batch"], r["engine"]) for r in result["rows"]] == [(b, e) for b in (1, 2) for e in engines]
    assert 0 < result["bandwidth_gb_s_min"] <= result["bandwidth_gb_s"]
    # one size: the floor is the higher of the bandwidths measured before and after it
    weight_bytes = build(SIZES["tiny"]).active_matmul_params() * 4
    for r in result["rows"]:
        assert abs(r["floor_tok_s"] - result["bandwidth_gb_s"] * 1e9 / weight_bytes) < 1e-6 * r["floor_tok_s"]
    for r in result["rows"]:
        # decode is NaN only when a row stayed disturbed through three re-timings (a loaded machine)
        assert r["prefill_tok_s"] > 0 and r["floor_tok_s"] > 0 and not r["decode_tok_s"] <= 0
        assert r["same_tokens"]  # greedy: the uncached path and transformers pick the same tokens
    model = build(SIZES["tiny"])
    for r in result["rows"]:
        # paired floor: llmfs's batch-1 rows only; bytes read per step: cached engines only, weights + KV by hand
        assert ("bandwidth_util_paired" in r) == (r["batch"] == 1 and r["engine"] == "llmfs")
        if r["engine"] == "llmfs no-cache":
            assert "read_gb_s" not in r
        else:
            kv = 2 * 2 * 4 * 8 * (8 + 6 / 2) * 4 * r["batch"]  # k and v, 2 layers x 4 heads x 8 dims, mean slots
            assert kv == kv_bytes_per_step(model.cfg, r["batch"], 8, 6)
            assert math.isnan(r["decode_tok_s"]) or \
                math.isclose(r["read_gb_s"], r["decode_tok_s"] / r["batch"] * (weight_bytes + kv) / 1e9)
    assert "| tiny | 2 | llmfs no-cache |" in format_table(result["rows"])
    assert len(summary(result)) == 2 and ("transformers" in summary(result)[0])


def test_matvec_bandwidth_is_positive():
    assert matvec_bandwidth(seconds=0.05, rows=256, cols=256) > 0


def test_the_floor_matrix_outgrows_the_last_level_cache(tmp_path):
    for i, (kind, size) in enumerate([("Data", "48K"), ("Instruction", "64K"), ("Unified", "2048K"),
                                      ("Unified", "491520K")]):
        (tmp_path / f"index{i}").mkdir()
        (tmp_path / f"index{i}" / "type").write_text(kind + "\n")
        (tmp_path / f"index{i}" / "size").write_text(size + "\n")
    assert last_level_cache_bytes(tmp_path) == 480 << 20  # the 480 MiB L3 of the VM the benchmarks ran on
    assert last_level_cache_bytes(tmp_path / "absent") == 0  # no sysfs (macOS, Windows): no cache known
    assert floor_matrix_rows(8192, cache_bytes=480 << 20) * 8192 * 4 == 960 << 20  # twice the cache
    assert floor_matrix_rows(8192, cache_bytes=32 << 20) == 8192  # never under 256 MiB
    assert floor_matrix_rows(8192, cache_bytes=4 << 30) * 8192 * 4 == 2 << 30  # capped at 2 GiB


def test_decode_rate_is_the_marginal_rate_and_nan_when_timings_invert():
    assert decode_rate(8, 33, 0.5, 2.5) == 8 * 32 / 2.0
    assert math.isnan(decode_rate(8, 3, 0.02, 0.019))  # t(N) < t(1): no rate (was 1.6e10 tok/s)
    assert math.isnan(decode_rate(1, 3, 0.02, 0.02))


def test_kv_bytes_per_step_is_the_mean_over_the_decode_steps():
    cfg = build(SIZES["small"]).cfg  # 4 layers, 4 kv heads of 64
    prompt, n = 10, 5
    per_slot = 2 * 4 * 4 * 64 * 4  # k and v, every layer and head, fp32
    steps = [prompt + j for j in range(1, n)]  # decode forward j attends over prompt + j slots
    assert kv_bytes_per_step(cfg, 3, prompt, n) == 3 * per_slot * sum(steps) / len(steps)
    assert kv_bytes_per_step(cfg, 1, prompt, n, slots=512) == per_slot * 512  # a static cache reads every slot


def test_paired_utilization_is_the_median_of_pairs_measured_together():
    class Probe:  # a floor of 1, 2, 3 ... bytes/s, one per measurement
        def __init__(self):
            self.n = 0

        def measure(self, seconds):
            self.n += 1
            return float(self.n)

    calls = []
    util = paired_utilization(lambda: calls.append(1), t1=-1.0, new_tokens=2, weight_bytes=1, probes=[Probe()],
                              pairs=3, seconds=0.0)
    assert len(calls) == 3
    # decode rate of pair i = 1 / (t_i + 1) tok/s ~ 1 (calls take microseconds); floor i = i tok/s
    assert math.isclose(util, 1 / 2, rel_tol=1e-3)


def test_a_probe_measures_again_on_the_same_matrix():
    probe = MatvecProbe(rows=256, cols=256)
    first = probe.a
    assert probe.measure(0.01) > 0 and probe.measure(0.01) > 0 and probe.a is first


def test_the_compiled_engine_reads_its_call_sized_cache():
    cfg = build(SIZES["gpt2"]).cfg  # max_seq_len 1024
    assert engine_slots("llmfs compiled", cfg, 64, 32) == 128  # 64 + 32 - 1 = 95 slots needed -> 128
    assert engine_slots("llmfs compiled", cfg, 64, 1) == 64
    assert engine_slots("llmfs", cfg, 64, 32) is None and engine_slots("transformers", cfg, 64, 32) is None
