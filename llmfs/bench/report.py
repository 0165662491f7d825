"""Bench reports: one JSON shape for every suite, a rich table, markdown tables, and `--compare` ratios.

A report is `{"schema": 1, "suite", "env": timing.environment(...), "keys": [...], "rows": [{...}], "notes":
[...]}`. `keys` name the columns that identify a row (size, variant, precision, ...); every other number in a
row is a figure. `--compare BASELINE.json` matches the rows of two reports of the same suite by their key
values and divides each shared figure: new / baseline (so > 1 is faster for a tokens/s figure, slower for a
time, bigger for a memory figure).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from llmfs.errors import LlmfsError

SCHEMA = 1


@dataclasses.dataclass(frozen=True)
class Column:
    """One table column: the row key it shows, its header, and a format spec (",.0f") or `f(row) -> str`."""

    key: str
    header: str
    fmt: str | Callable[[dict], str] = ""

    def cell(self, row: dict) -> str:
        if callable(self.fmt):
            return self.fmt(row)
        value = row.get(self.key)
        if value is None:
            return ""
        return format(value, self.fmt) if self.fmt else str(value)


def spread_column(name: str, header: str, digits: int = 2) -> Column:
    """A timed quantity (timing.Timing.fields) shown as "median (min-max)" in ms."""
    def cell(r: dict) -> str:
        return f"{r[f'{name}_ms']:.{digits}f} ({r[f'{name}_ms_min']:.{digits}f}-{r[f'{name}_ms_max']:.{digits}f})"
    return Column(f"{name}_ms", f"{header} (min-max)", cell)


def make(suite: str, env: dict, keys: Sequence[str], rows: list[dict], notes: Sequence[str] = ()) -> dict:
    return {"schema": SCHEMA, "suite": suite, "env": env, "keys": list(keys), "rows": rows, "notes": list(notes)}


def figures(row: dict, keys: Sequence[str]) -> dict[str, float]:
    """The numeric fields of a row that are not key columns (bools are flags, not figures)."""
    return {k: v for k, v in row.items() if k not in keys and isinstance(v, (int, float))
            and not isinstance(v, bool)}


def markdown_table(rows: list[dict], columns: Sequence[Column]) -> str:
    head = "| " + " | ".join(c.header for c in columns) + " |\n|" + "---|" * len(columns)
    return "\n".join([head] + ["| " + " | ".join(c.cell(r) for c in columns) + " |" for r in rows])


def make_console():
    """A rich console; 200 columns wide when not a terminal (a pipe, a file, a test) so tables do not wrap."""
    from rich.console import Console

    c = Console()
    return c if c.is_terminal else Console(width=200)


def print_report(report: dict, columns: Sequence[Column], console=None) -> None:
    """The environment line, a rich table of the rows, then the notes."""
    from rich.table import Table

    from llmfs.bench.timing import describe

    console = console or make_console()
    columns = [c for c in columns if any(c.key in r for r in report["rows"])]  # none empty (e.g. CUDA-only)
    table = Table()
    for c in columns:
        table.add_column(c.header, justify="left" if c.key in report["keys"] else "right")
    for row in report["rows"]:
        table.add_row(*(c.cell(row) for c in columns))
    console.print(f"llmfs bench {report['suite']}: {describe(report['env'])}", highlight=False, markup=False)
    console.print(table)
    for note in report["notes"]:
        console.print(f"note: {note}", highlight=False, markup=False)


def write_json(report: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def load_baseline(path: str | Path, suite: str) -> dict:
    """A report written by `--json` earlier, for `--compare`; a clear error if it cannot serve as one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise LlmfsError(f"--compare {path}: cannot read it ({e.__class__.__name__}: {e})") from None
    except json.JSONDecodeError as e:
        raise LlmfsError(f"--compare {path}: not JSON ({e}); pass a file written by llmfs bench --json") from None
    if not isinstance(data, dict) or not {"suite", "keys", "rows"} <= set(data):
        raise LlmfsError(f"--compare {path}: not an llmfs bench report (no suite / keys / rows); pass a file "
                         "written by llmfs bench --json")
    if data["suite"] != suite:
        raise LlmfsError(f"--compare {path}: it is a '{data['suite']}' report, this run is '{suite}'")
    return data


def compare(report: dict, baseline: dict) -> list[dict]:
    """One dict per row present in both reports: its key values and `{figure}_ratio` = new / baseline for
    every figure both rows have (positive and finite on both sides)."""
    keys = report["keys"]
    old = {tuple(r.get(k) for k in keys): r for r in baseline["rows"]}
    out = []
    for row in report["rows"]:
        base = old.get(tuple(row.get(k) for k in keys))
        if base is None:
            continue
        new_f, old_f = figures(row, keys), figures(base, keys)
        ratios = {f"{k}_ratio": v / old_f[k] for k, v in new_f.items()
                  if k in old_f and old_f[k] > 0 and v > 0 and math.isfinite(v) and math.isfinite(old_f[k])}
        out.append({**{k: row.get(k) for k in keys}, **ratios})
    return out


def print_comparison(report: dict, ratios: list[dict], metrics: Sequence[str], baseline_path: str,
                     console=None) -> None:
    """A table of new / baseline for the suite's headline figures."""
    from rich.table import Table

    console = console or make_console()
    if not ratios:
        console.print(f"--compare {baseline_path}: no row matches this run's rows (keys: "
                      f"{', '.join(report['keys'])})", highlight=False, markup=False)
        return
    shown = [m for m in metrics if any(f"{m}_ratio" in r for r in ratios)]
    table = Table()
    for k in report["keys"]:
        table.add_column(k)
    for m in shown:
        table.add_column(m, justify="right")
    for r in ratios:
        table.add_row(*(str(r.get(k, "")) for k in report["keys"]),
                      *(f"{r[f'{m}_ratio']:.2f}x" if f"{m}_ratio" in r else "" for m in shown))
    console.print(f"this run / {baseline_path}:", highlight=False, markup=False)
    console.print(table)


def finish(report: dict, columns: Sequence[Column], metrics: Sequence[str], *, json_path: str | None,
           compare_path: str | None, console=None) -> dict:
    """What every suite does with its report: print it, compare it with a baseline, write the JSON."""
    print_report(report, columns, console)
    if compare_path is not None:
        ratios = compare(report, load_baseline(compare_path, report["suite"]))
        print_comparison(report, ratios, metrics, compare_path, console)
        report = {**report, "compare": {"baseline": str(compare_path), "rows": ratios}}
    if json_path is not None:
        write_json(report, json_path)
    return report
