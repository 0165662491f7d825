"""`llmfs plot`: PNGs from metrics.jsonl, clear errors for a missing extra or an empty run."""

from __future__ import annotations

import json
import sys

import pytest

from llmfs.cli import main
from llmfs.errors import DataError, MissingExtraError
from llmfs.plot import plot_run, series


def write_run(tmp_path):
    lines = [{"kind": "train", "step": s, "loss": 5.0 / s, "lr": 1e-3, "tok_per_s": 1000.0} for s in range(1, 11)]
    lines += [{"kind": "eval", "step": 10, "val_loss": 0.9, "val_bpb": 0.4},
              {"kind": "sample", "step": 10, "text": "x"}, {"kind": "train", "step": 11, "loss": None}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    return tmp_path


def test_series_skips_other_kinds_and_nulls(tmp_path):
    from llmfs.plot import read_metrics

    steps, values = series(read_metrics(write_run(tmp_path)), "train", "loss")
    assert steps == list(range(1, 11)) and values[0] == 5.0


def test_plot_writes_pngs(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    run = write_run(tmp_path)
    assert main(["plot", str(run)]) == 0
    names = sorted(p.name for p in (run / "plots").iterdir())
    assert names == ["bpb.png", "loss.png", "lr.png", "throughput.png"]  # no MFU logged: no mfu.png
    for name in names:
        data = (run / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_plot_errors(tmp_path, monkeypatch, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    (tmp_path / "metrics.jsonl").write_text('{"kind": "sample", "step": 1}\n{"kind": "tr')
    with pytest.raises(DataError, match=r"metrics.jsonl:2: not a JSON object"):
        plot_run(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'llmfs\[plot\]'"):
        plot_run(write_run(tmp_path))
