"""Metrics: JSONL records, plain console lines, and a clear error naming the extra for missing sinks."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from llmfs.errors import MissingExtraError
from llmfs.metrics import LogConfig, Metrics


def test_jsonl_and_plain_console(tmp_path, capsys):
    with Metrics(tmp_path, LogConfig(console="plain"), total_steps=10) as m:
        m.log(1, {"loss": torch.tensor(2.5), "lr": 3e-4, "tok_per_s": 12345.0})
        m.log(2, {"loss": float("nan")}, kind="eval")
        m.message("saved step-000002")
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in lines] == [("train", 1), ("eval", 2)]
    assert lines[0]["loss"] == 2.5 and lines[0]["lr"] == 3e-4 and lines[1]["loss"] is None
    err = capsys.readouterr().err
    assert "[train] step 1/10 | loss 2.5000 | lr 3.00e-04 | tok_per_s 12,345" in err
    assert "saved step-000002" in err


def test_quiet_and_non_main_rank(tmp_path, capsys):
    with Metrics(tmp_path / "a", LogConfig(console="plain"), quiet=True) as m:
        m.log(1, {"loss": 1.0})
    assert capsys.readouterr().err == ""
    assert (tmp_path / "a" / "metrics.jsonl").exists()
    with Metrics(tmp_path / "b", LogConfig(), is_main=False) as m:
        m.log(1, {"loss": 1.0})
    assert not (tmp_path / "b").exists()


def test_rich_console_runs(tmp_path):
    with Metrics(tmp_path, LogConfig(console="rich"), total_steps=3) as m:
        for s in range(1, 4):
            m.advance(s)
            m.log(s, {"loss": 1.0 / s})
        m.log(3, {"loss": 0.1}, kind="eval")
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 4


@pytest.mark.parametrize("key,module,extra", [("tensorboard", "torch.utils.tensorboard", "tb"),
                                              ("wandb", "wandb", "wandb")])
def test_missing_optional_sink_names_the_extra(tmp_path, monkeypatch, key, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(MissingExtraError, match=rf"log.{key} = true needs the '.*' package: "
                                                rf"pip install 'llmfs\[{extra}\]'"):
        Metrics(tmp_path, LogConfig(**{key: True}))


def test_tensorboard_sink_writes_events(tmp_path):
    pytest.importorskip("tensorboard")
    with Metrics(tmp_path, LogConfig(tensorboard=True, console="none")) as m:
        m.log(1, {"loss": 1.0})
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
