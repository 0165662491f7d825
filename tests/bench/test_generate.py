"""Smoke test of the generation benchmark at a tiny size: it runs and reports sane fields; timings are never
asserted."""

import importlib.util

from llmfs.bench.generate import SIZES, build, format_table, matvec_bandwidth, run, summary


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
        assert r["prefill_tok_s"] > 0 and r["decode_tok_s"] > 0 and r["floor_tok_s"] > 0
        assert r["same_tokens"]  # greedy: the uncached path and transformers pick the same tokens
    assert "| tiny | 2 | llmfs no-cache |" in format_table(result["rows"])
    assert len(summary(result)) == 2 and ("transformers" in summary(result)[0])


def test_matvec_bandwidth_is_positive():
    assert matvec_bandwidth(seconds=0.05, rows=256, cols=256) > 0
