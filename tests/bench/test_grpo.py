"""`llmfs bench grpo` in its quick settings: llmfs alone, and against TRL when trl is installed."""

from __future__ import annotations

import math

import pytest

from llmfs.bench.grpo import QUICK, bench, format_report


def _check(row: dict) -> None:
    for key in ("median_s", "min_s", "max_s", "samples_per_s"):
        assert math.isfinite(row[key]) and row[key] > 0, (key, row)
    assert row["min_s"] <= row["median_s"] <= row["max_s"]
    assert row["samples_per_s"] == pytest.approx(QUICK.replies / row["median_s"])


def test_llmfs_only_without_trl():
    result = bench(settings=QUICK, trl=False)
    (row,) = result["rows"]
    assert row["framework"] == "llmfs" and "TRL skipped" in result["note"]
    _check(row)
    assert 1 <= row["mean_reply_tokens"] <= QUICK.new_tokens
    assert "| llmfs |" in format_report(result)


def test_against_trl_on_the_exported_model():
    pytest.importorskip("trl")
    result = bench(settings=QUICK)
    llmfs_row, trl_row = result["rows"]
    assert [r["framework"] for r in result["rows"]] == ["llmfs", "trl"] and result["env"]["trl"]
    _check(llmfs_row)
    _check(trl_row)
    assert llmfs_row["vs_trl"] == pytest.approx(llmfs_row["samples_per_s"] / trl_row["samples_per_s"])
    assert 1 <= trl_row["mean_reply_tokens"] <= QUICK.new_tokens
