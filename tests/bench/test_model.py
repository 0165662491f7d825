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


def test_paired_ratios_by_hand():
    from llmfs.bench.model import paired_ratios

    # rounds 10/5, 12/6, 30/10, 8/8, 21/7 -> ratios 2, 2, 3, 1, 3 -> sorted 1, 2, 2, 3, 3
    got = paired_ratios([10, 12, 30, 8, 21], [5, 6, 10, 8, 7])
    assert got == {"ratio_median": 2.0, "ratio_q1": 2.0, "ratio_q3": 3.0}
    assert paired_ratios([3.0], [2.0]) == {"ratio_median": 1.5, "ratio_q1": 1.5, "ratio_q3": 1.5}


def test_rows_carry_the_per_round_ratios_and_quick_honours_rounds(monkeypatch):
    import llmfs.bench.model as bm

    tiny = Shape("tiny", vocab=11, block=8, d=16, layers=1, heads=2, batch=2)
    rows = run((tiny,), rounds=3, chunk=1, warmup=0, memory=False)
    base = rows[0]
    assert base["variant"] == "nanogpt-baseline" and base["ratio_median"] == base["ratio_q1"] == 1.0
    assert all(r["ratio_q1"] <= r["ratio_median"] <= r["ratio_q3"] for r in rows)
    seen = {}
    monkeypatch.setattr(bm, "run", lambda sizes, **kw: seen.update(kw, sizes=sizes) or [])
    bm.main(["--quick", "--rounds", "7", "--no-memory"])
    assert seen["rounds"] == 7 and seen["sizes"] == (bm.REFERENCE,)
    bm.main(["--quick", "--no-memory"])
    assert seen["rounds"] == 3
