"""`llmfs bench` end to end through the CLI at --quick: every suite writes a report of the documented shape
in which every figure is positive and finite; --compare prints ratios; --amp and --profile; errors exit 2.
Timings are never asserted."""

from __future__ import annotations

import json
import math
import pytest
import torch

from llmfs.bench.suites import SUITES
from llmfs.cli import main


def check_report(data: dict, suite: str) -> None:
    assert set(data) >= {"schema", "suite", "env", "keys", "rows", "notes"} and data["suite"] == suite
    assert {"device", "device_name", "torch", "threads", "dtype"} <= set(data["env"])
    assert data["rows"], "no rows"
    for row in data["rows"]:
        assert all(k in row for k in (["suite"] if suite == "all" else data["keys"]))
        figures = {k: v for k, v in row.items() if k not in data["keys"] and isinstance(v, (int, float))
                   and not isinstance(v, bool)}
        assert figures, row
        bad = {k: v for k, v in figures.items() if not (math.isfinite(v) and v > 0)}
        assert not bad, f"{suite} row {row}: not positive and finite: {bad}"


def test_every_suite_runs_quick_through_all(tmp_path, capsys):
    out = tmp_path / "all.json"
    assert main(["bench", "all", "--quick", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    check_report(data, "all")
    assert sorted({r["suite"] for r in data["rows"]}) == sorted(SUITES)
    for suite in SUITES:
        check_report({**data, "suite": suite, "env": data["envs"][suite], "keys": data["suite_keys"][suite], "rows": [
            r for r in data["rows"] if r["suite"] == suite]}, suite)
    attention = {(r["impl"], r["window"], r["seq_len"]) for r in data["rows"] if r["suite"] == "attention"}
    assert attention == {(i, w, t) for i in ("manual", "sdpa") for w in ("full", "32") for t in (64, 128)}
    tokenizer = [(r["trainer"], r["vocab_size"]) for r in data["rows"] if r["suite"] == "tokenizer"]
    assert tokenizer == [("llmfs", 512), ("tokenizers", 512)]
    generate = {(r["batch"], r["engine"]) for r in data["rows"] if r["suite"] == "generate"}
    assert {(1, "llmfs"), (8, "llmfs"), (1, "llmfs no-cache"), (8, "llmfs no-cache")} <= generate
    text = capsys.readouterr().out
    assert all(f"llmfs bench {s}" in text for s in SUITES)
    assert f"torch {torch.__version__}" in text  # the environment line above each table


def test_compare_prints_ratios_against_an_earlier_run(tmp_path, capsys):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["bench", "moe", "--quick", "--json", str(first)]) == 0
    check_report(json.loads(first.read_text()), "moe")
    assert [r["variant"] for r in json.loads(first.read_text())["rows"]] == ["dense", "moe", "moe cf=1.25"]
    capsys.readouterr()
    assert main(["bench", "moe", "--quick", "--compare", str(first), "--json", str(second)]) == 0
    assert f"this run / {first}" in capsys.readouterr().out
    ratios = json.loads(second.read_text())["compare"]["rows"]
    assert [r["variant"] for r in ratios] == ["dense", "moe", "moe cf=1.25"]
    assert all(r["fwd_tok_s_ratio"] > 0 and r["params_ratio"] == 1.0 for r in ratios)


def test_train_amp_and_profile(tmp_path, capsys):
    out, prof = tmp_path / "train.json", tmp_path / "prof"
    assert main(["bench", "train", "--quick", "--amp", "--device", "cpu", "--profile", str(prof), "--batch", "3",
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    check_report(data, "train")
    assert [(r["size"], r["precision"], r["mode"]) for r in data["rows"]] == [("tiny", "fp32", "eager"),
                                                                              ("tiny", "bf16", "eager")]
    assert all(r["tokens_per_step"] == 3 * 64 for r in data["rows"])  # --batch 3 sequences of tiny's 64
    assert all(r["loss"] < math.log(512) + 1 for r in data["rows"])  # K steps from the same init and batches
    assert all(r["peak_mib"] > 0 for r in data["rows"])  # CPU: measured in a fresh process (check_report: finite)
    assert set(data["env"]["matmul_peak_tflops"]) == {"fp32", "bf16"}
    traces = list(prof.glob("*.pt.trace.json"))
    assert traces and data["profile"]["trace_files"] == [str(p) for p in traces]
    assert "traceEvents" in json.loads(traces[0].read_text())
    top = data["profile"]["top_ops"]
    assert 0 < len(top) <= 15 and all(op["self_ms"] >= 0 for op in top)
    text = capsys.readouterr().out
    assert "torch.profiler" in text and top[0]["name"] in text and "Self CPU" in text


def test_train_matmul_precision_medium(tmp_path, capsys):
    """--matmul-precision medium: the steps and the MFU peak run under it, the header says so, torch is left
    exact afterwards."""
    import torch

    out = tmp_path / "train.json"
    assert main(["bench", "train", "--quick", "--device", "cpu", "--matmul-precision", "medium", "--json",
                 str(out)]) == 0
    data = json.loads(out.read_text())
    check_report(data, "train")
    assert data["env"]["matmul_precision"] == "medium" and "(fp32 matmul precision medium)" in capsys.readouterr().out
    assert torch.get_float32_matmul_precision() == "highest"


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    assert main(["bench", "train", "--size", "huge"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --size huge: not a bench train size; use one of ") and err.count("\n") == 1
    assert main(["bench", "train", "--batch", "0"]) == 2
    assert capsys.readouterr().err == "error: --batch 0: sequences per step must be at least 1\n"
    assert main(["bench", "train", "--matmul-precision", "low"]) == 2
    assert capsys.readouterr().err == ("error: --matmul-precision 'low': use 'highest', 'high' or 'medium' (as "
                                       "run.matmul_precision)\n")
    missing = tmp_path / "none.json"
    assert main(["bench", "attention", "--quick", "--compare", str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: --compare {missing}: cannot read it") and captured.err.count("\n") == 1
    assert captured.out == ""  # refused before anything was measured


@pytest.mark.slow
def test_train_compile_variant(tmp_path):
    out = tmp_path / "train.json"
    assert main(["bench", "train", "--quick", "--compile", "--device", "cpu", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    check_report(data, "train")
    assert [r["mode"] for r in data["rows"]] == ["eager", "compile"]  # compile works on CPU here (gcc)


@pytest.mark.slow
def test_generate_compiled_decode_row(tmp_path):
    out = tmp_path / "generate.json"
    assert main(["bench", "generate", "--quick", "--compile", "--no-hf", "--device", "cpu", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    check_report(data, "generate")
    compiled = [r for r in data["rows"] if r["engine"] == "llmfs compiled"]
    assert len(compiled) == 2 and all(r["same_tokens"] for r in compiled)  # batch 1 and 8, greedy == eager


@pytest.mark.gpu
def test_train_amp_on_cuda(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    out = tmp_path / "train.json"
    assert main(["bench", "train", "--quick", "--amp", "--device", "cuda", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    check_report(data, "train")
    assert [r["precision"] for r in data["rows"]] == ["fp32", "bf16", "fp16"]
    assert all("peak_mib" in r for r in data["rows"])
