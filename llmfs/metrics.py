"""Metrics: always a `metrics.jsonl` in the run directory; a console view; TensorBoard and wandb when enabled.

One `Metrics` object per run. `log(step, values)` appends one JSON object per event and forwards the values to
the enabled sinks. The console view is a rich progress bar (step, loss, tokens/s, ETA) on a terminal and plain
lines otherwise (CI logs, files), nothing with `quiet`. Only the main process (rank 0) writes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Literal

from llmfs.config import option
from llmfs.errors import MissingExtraError


@dataclasses.dataclass(frozen=True)
class LogConfig:
    """The `[log]` section."""

    every: int = option(10, ge=1, doc="log training metrics every N optimizer steps")
    console: Literal["auto", "rich", "plain", "none"] = "auto"  # auto = rich on a terminal, plain otherwise
    tensorboard: bool = False  # needs the `tb` extra
    wandb: bool = False  # needs the `wandb` extra
    wandb_project: str = "llmfs"


def _plain(value: Any) -> Any:
    """A JSON-safe scalar: tensors and numpy numbers become floats/ints, non-finite floats become null."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _format(key: str, value: Any) -> str:
    if isinstance(value, float):
        if key == "lr" or (value != 0 and abs(value) < 1e-3):
            return f"{key} {value:.2e}"
        return f"{key} {value:,.0f}" if abs(value) >= 1e3 else f"{key} {value:.4f}"
    return f"{key} {value}"


def _keep_until(path: Path, step: int) -> None:
    """Rewrite a metrics.jsonl with only its records of steps 0..step, none for step 0 (a fresh run), atomically;
    a torn last line is dropped."""
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines() if step > 0 else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and 0 <= record["step"] <= step:
            kept.append(line + "\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)


class Metrics:
    """Writes metrics.jsonl and forwards to the console, TensorBoard and wandb sinks."""

    def __init__(self, run_dir: str | Path, cfg: LogConfig, *, total_steps: int | None = None,
                 is_main: bool = True, quiet: bool = False, run_name: str = "run",
                 config: dict[str, Any] | None = None, description: str = "train", resume_step: int = 0):
        """`resume_step`: the step of the checkpoint the run continues from (0: a fresh run). metrics.jsonl keeps
        only the records up to it, so the file is the history of the weights being trained: a fresh run drops
        what an attempt that never saved a checkpoint logged, a resumed run what its interrupted predecessor
        logged after the checkpoint (it logs those steps again). TensorBoard purges the same steps."""
        self.cfg, self.is_main, self.total = cfg, is_main, total_steps
        self._file = self._tb = self._wandb = self._progress = None
        if not is_main:
            return
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            _keep_until(self.path, resume_step)
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise MissingExtraError("log.tensorboard = true", "tensorboard", "tb") from None
            self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"), purge_step=resume_step + 1)
        if cfg.wandb:
            try:
                import wandb
            except ImportError:
                raise MissingExtraError("log.wandb = true", "wandb", "wandb") from None
            self._wandb = wandb.init(project=cfg.wandb_project, name=run_name, config=config or {},
                                     dir=str(run_dir))
        self._file = open(self.path, "a", encoding="utf-8")
        mode = cfg.console
        if quiet:
            mode = "none"
        elif mode == "auto":
            mode = "rich" if sys.stderr.isatty() else "plain"
        self._mode = mode
        if mode == "rich":
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[shown]}"), TimeElapsedColumn(),
                                      TextColumn("ETA"), TimeRemainingColumn(), transient=False)
            self._progress.start()
            self._task = self._progress.add_task(description, total=total_steps, shown="")

    def log(self, step: int, values: dict[str, Any], *, kind: str = "train") -> None:
        """Record `values` at `step`; `kind` separates train / eval / sample events in the JSONL."""
        if not self.is_main:
            return
        clean = {k: _plain(v) for k, v in values.items()}
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **clean}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        numeric = {k: v for k, v in clean.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self._tb is not None:
            for k, v in numeric.items():
                self._tb.add_scalar(f"{kind}/{k}", v, step)
        if self._wandb is not None:
            self._wandb.log({f"{kind}/{k}": v for k, v in numeric.items()}, step=step)
        shown = " | ".join(_format(k, v) for k, v in clean.items() if v is not None)
        if self._mode == "rich":
            self._progress.update(self._task, completed=step, shown=shown if kind == "train" else
                                  self._progress.tasks[0].fields["shown"])
            if kind != "train":
                self._progress.console.print(f"[{kind}] step {step} | {shown}")
        elif self._mode == "plain":
            total = f"/{self.total}" if self.total else ""
            print(f"[{kind}] step {step}{total} | {shown}", file=sys.stderr, flush=True)

    def advance(self, step: int) -> None:
        """Move the progress bar without logging (called every step so the ETA stays current)."""
        if self.is_main and self._mode == "rich":
            self._progress.update(self._task, completed=step)

    def message(self, text: str) -> None:
        """A one-off line (setup summary, checkpoint saved) on the console, not in the JSONL."""
        if not self.is_main or self._mode == "none":
            return
        if self._mode == "rich":
            self._progress.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
        if self._file is not None:
            self._file.close()
        self._file = self._tb = self._wandb = self._progress = None

    def __enter__(self) -> "Metrics":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
