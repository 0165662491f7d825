"""`llmfs bench grpo --quick`: llmfs alone, and against TRL on the exported model when trl is installed."""

from __future__ import annotations

import json
import math

import pytest

from llmfs.bench.grpo import QUICK
from llmfs.cli import main


def _check(row: dict) -> None:
    for key in ("median_s", "min_s", "max_s", "samples_per_s", "mean_reply_tokens"):
        assert math.isfinite(row[key]) and row[key] > 0, (key, row)
    assert row["min_s"] <= row["median_s"] <= row["max_s"]
    assert row["samples_per_s"] == pytest.approx(QUICK.replies / row["median_s"])
    assert row["mean_reply_tokens"] <= QUICK.new_tokens


def test_llmfs_only_without_trl(tmp_path, capsys):
    out = tmp_path / "grpo.json"
    assert main(["bench", "grpo", "--quick", "--no-trl", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["suite"] == "grpo" and report["keys"] == ["framework"]
    (row,) = report["rows"]
    assert row["framework"] == "llmfs" and any("TRL skipped" in n for n in report["notes"])
    _check(row)
    assert "samples/s" in capsys.readouterr().out


def test_against_trl_on_the_exported_model(tmp_path):
    pytest.importorskip("trl")
    out = tmp_path / "grpo.json"
    assert main(["bench", "grpo", "--quick", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    llmfs_row, trl_row = report["rows"]
    assert [r["framework"] for r in report["rows"]] == ["llmfs", "trl"] and report["env"]["trl"]
    _check(llmfs_row)
    _check(trl_row)
    assert llmfs_row["vs_trl"] == pytest.approx(llmfs_row["samples_per_s"] / trl_row["samples_per_s"])
    # --compare reads the earlier report and matches the llmfs row by its key
    assert main(["bench", "grpo", "--quick", "--no-trl", "--compare", str(out)]) == 0
