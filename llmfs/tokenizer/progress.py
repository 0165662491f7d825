"""Progress bars for the tokenizer commands: rich bars (count, rate, ETA) on a terminal, nothing otherwise.

Quiet when `quiet=True` or stderr is not a TTY (CI logs, pipes, tests), per house rule 10.
"""

from __future__ import annotations

import sys


class Progress:
    """`with Progress(quiet) as p: t = p.add("merging", total=n, unit="merges"); p.update(t, k)`."""

    def __init__(self, quiet: bool = False):
        self.enabled = not quiet and sys.stderr.isatty()
        self._bar = None

    def __enter__(self) -> "Progress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=Console(stderr=True), transient=False)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def add(self, description: str, total: int | None, unit: str) -> int:
        if self._bar is None:
            return 0
        return self._bar.add_task(description, total=total, unit=unit, rate="")

    def _refresh_rate(self, task: int) -> None:
        t = self._bar.tasks[task]
        speed = t.speed
        unit = t.fields["unit"]
        self._bar.update(task, rate=f"{speed:,.0f} {unit}/s" if speed else "")

    def advance(self, task: int, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(task, n)
            self._refresh_rate(task)

    def update(self, task: int, completed: int) -> None:
        if self._bar is not None:
            self._bar.update(task, completed=completed)
            self._refresh_rate(task)

    def done(self, task: int) -> None:
        if self._bar is not None:
            t = self._bar.tasks[task]
            self._bar.update(task, total=t.completed)
