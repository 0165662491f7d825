"""Smoke test of the model benchmark: it runs and reports; timings are never asserted."""

from llmfs.bench.model import REFERENCE, Shape, build, format_table, run


def test_baseline_matches_classic_stack_parameter_count():
    count = lambda m: sum(p.numel() for p in {id(p): p for p in m.parameters()}.values())  # noqa: E731
    assert count(build(REFERENCE, "nanogpt-baseline")) == count(build(REFERENCE, "classic/sdpa")) == 804_096


def test_bench_runs_on_a_tiny_shape():
    tiny = Shape("tiny", vocab=11, block=8, d=16, layers=1, heads=2, batch=2)
    rows = run((tiny,), rounds=1, chunk=1, warmup=1, memory=False)
    assert [r["variant"] for r in rows] == ["nanogpt-baseline", "classic/sdpa", "classic/manual", "modern/sdpa",
                                            "modern/manual"]
    assert all(r["train_tok_s"] > 0 and r["fwd_tok_s"] > 0 for r in rows)
    assert "| tiny | modern/manual |" in format_table(rows)


def test_bench_medium_rows_step_under_medium_and_leave_torch_exact():
    import torch

    from llmfs.bench.model import Runner

    tiny = Shape("tiny", vocab=11, block=8, d=16, layers=1, heads=2, batch=2)
    rows = run((tiny,), rounds=1, chunk=1, warmup=1, memory=False, medium=True)
    assert [r["variant"] for r in rows][-2:] == ["classic/sdpa@medium", "modern/sdpa@medium"]
    assert torch.get_float32_matmul_precision() == "highest"
    runner = Runner(tiny, "modern/sdpa@medium", torch.device("cpu"))
    runner.train_step()
    assert torch.get_float32_matmul_precision() == "medium"
    assert isinstance(runner.opt, torch.optim.AdamW) and runner.opt.defaults["fused"]  # llmfs's own optimizer
