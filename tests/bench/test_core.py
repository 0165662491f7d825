"""The shared bench core: timing (warm-up, repeats, median and spread), saved-activation memory, the report
JSON shape, markdown tables and --compare ratios. Timings are never asserted, only their consistency."""

from __future__ import annotations

import json
import math

import pytest
import torch

from llmfs.bench import report as rep
from llmfs.bench.timing import describe, environment, forward_backward_fields, saved_activation_mib, time_calls
from llmfs.errors import LlmfsError


def test_time_calls_runs_warmup_then_repeats_and_orders_the_spread():
    calls = []
    t = time_calls(lambda: calls.append(1), torch.device("cpu"), warmup=2, repeats=5)
    assert len(calls) == 7 and t.repeats == 5
    assert 0 <= t.min <= t.median <= t.max
    assert set(t.fields("step")) == {"step_ms", "step_ms_min", "step_ms_max"}
    with pytest.raises(ValueError):
        time_calls(lambda: None, torch.device("cpu"), warmup=0, repeats=0)


def test_saved_activation_mib_counts_each_saved_storage_once():
    w = torch.nn.Parameter(torch.randn(64, 64))
    x = torch.randn(128, 64)
    # x @ w saves x (w is a parameter: excluded); relu saves its output: two (128, 64) fp32 tensors
    mib = saved_activation_mib(lambda: torch.relu(x @ w), [w])
    assert mib == pytest.approx(2 * 128 * 64 * 4 / 2**20)


def test_forward_backward_fields_are_positive():
    lin = torch.nn.Linear(8, 8)
    f = forward_backward_fields(lin, torch.randn(4, 8), lin.parameters(), warmup=1, repeats=2)
    assert f["fwd_ms"] > 0 and f["fwdbwd_ms"] > 0 and f["saved_mib"] > 0 and "peak_mib" not in f


def test_environment_names_device_torch_threads_dtype():
    env = environment(torch.device("cpu"), "fp32")
    assert env["torch"] == torch.__version__ and env["threads"] == torch.get_num_threads()
    assert env["dtype"] == "fp32" and env["device"] == "cpu"
    line = describe(env)
    assert f"torch {torch.__version__}" in line and f"{env['threads']} threads" in line and "dtype fp32" in line


def _report(tok_s, extra=None):
    rows = [{"size": "a", "mode": "x", "tok_s": tok_s, "ms": 2.0, "flag": True}, {"size": "b", "mode": "x",
                                                                                  "tok_s": 10.0, "ms": 1.0}]
    if extra:
        rows.append(extra)
    return rep.make("train", environment(torch.device("cpu"), "fp32"), ("size", "mode"), rows, ["a note"])


def test_compare_divides_shared_figures_of_rows_with_equal_keys():
    new = _report(30.0, {"size": "c", "mode": "x", "tok_s": 1.0})
    ratios = rep.compare(new, _report(10.0))
    assert ratios == [{"size": "a", "mode": "x", "tok_s_ratio": 3.0, "ms_ratio": 1.0},
                      {"size": "b", "mode": "x", "tok_s_ratio": 1.0, "ms_ratio": 1.0}]  # c has no baseline


def test_finish_prints_compares_and_writes_json(tmp_path, capsys):
    base = tmp_path / "base.json"
    rep.write_json(_report(10.0), base)
    cols = (rep.Column("size", "size"), rep.Column("tok_s", "tok/s", ",.0f"), rep.Column("peak", "never shown"))
    out = rep.finish(_report(20.0), cols, ("tok_s",), json_path=str(tmp_path / "new.json"), compare_path=str(base))
    text = capsys.readouterr().out
    assert "llmfs bench train" in text and "note: a note" in text and "2.00x" in text and "never shown" not in text
    data = json.loads((tmp_path / "new.json").read_text())
    assert data == json.loads(json.dumps(out)) and data["compare"]["rows"][0]["tok_s_ratio"] == 2.0


def test_markdown_table():
    cols = (rep.Column("size", "size"), rep.Column("tok_s", "tok/s", ",.0f"),
            rep.Column("ms", "ms", lambda r: f"{r['ms']:.1f}!"))
    assert rep.markdown_table([{"size": "a", "tok_s": 1234.4, "ms": 2}], cols) == \
        "| size | tok/s | ms |\n|---|---|---|\n| a | 1,234 | 2.0! |"


def test_load_baseline_refuses_what_is_not_a_report_of_this_suite(tmp_path):
    with pytest.raises(LlmfsError, match="cannot read"):
        rep.load_baseline(tmp_path / "missing.json", "train")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(LlmfsError, match="not JSON"):
        rep.load_baseline(tmp_path / "bad.json", "train")
    (tmp_path / "other.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(LlmfsError, match="not an llmfs bench report"):
        rep.load_baseline(tmp_path / "other.json", "train")
    rep.write_json(_report(1.0), tmp_path / "train.json")
    with pytest.raises(LlmfsError, match="'train' report, this run is 'moe'"):
        rep.load_baseline(tmp_path / "train.json", "moe")


def test_write_json_refuses_nan():
    with pytest.raises(ValueError):
        rep.write_json(_report(math.nan), "/dev/null")
