"""Smoke test of the generation benchmark at a tiny size: it runs and reports sane fields; timings are never
asserted."""

import importlib.util
import math

from llmfs.bench.generate import SIZES, build, decode_rate, format_table, matvec_bandwidth, run, summary


def test_bench_generate_runs_on_a_tiny_size():
    hf = importlib.util.find_spec("transformers") is not None
    result = run(("tiny",), batches=(1, 2), repeats=1, hf=hf)
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
    assert "| tiny | 2 | llmfs no-cache |" in format_table(result["rows"])
    assert len(summary(result)) == 2 and ("transformers" in summary(result)[0])


def test_matvec_bandwidth_is_positive():
    assert matvec_bandwidth(seconds=0.05, rows=256, cols=256) > 0


def test_decode_rate_is_the_marginal_rate_and_nan_when_timings_invert():
    assert decode_rate(8, 33, 0.5, 2.5) == 8 * 32 / 2.0
    assert math.isnan(decode_rate(8, 3, 0.02, 0.019))  # t(N) < t(1): no rate (was 1.6e10 tok/s)
    assert math.isnan(decode_rate(1, 3, 0.02, 0.02))
