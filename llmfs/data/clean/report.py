"""What a clean run counts (`Tally`), report.json, and the rich summary printed at the end.

Every document read is counted exactly once: kept, or dropped under one reason (the first step that rejects
it). `Tally.check()` asserts documents_in == kept + sum(dropped) before a report is written. A few examples per
drop reason (the first ones met, cut to 300 characters) carry the measures that decided, so thresholds can be
judged from the report alone.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

from llmfs.data.clean.config import CleanConfig
from llmfs.data.clean.dedup import lsh_threshold
from llmfs.data.clean.quality import quality_stats, words
from llmfs.data.clean.repetition import (duplicate_line_fractions, duplicate_ngram_char_fraction,
                                         top_ngram_char_fraction)

EXAMPLE_CHARS = 300


@dataclasses.dataclass
class Tally:
    documents_in: int = 0
    kept: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    dropped: Counter = dataclasses.field(default_factory=Counter)
    pii: Counter = dataclasses.field(default_factory=Counter)
    examples: dict[str, list[dict]] = dataclasses.field(default_factory=dict)
    near_jaccard_sum: float = 0.0
    near_jaccard_min: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "dropped": dict(self.dropped), "pii": dict(self.pii)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Tally":
        return cls(**{**data, "dropped": Counter(data["dropped"]), "pii": Counter(data["pii"])})

    def drop(self, reason: str, text: str, limit: int, **extra: Any) -> None:
        self.dropped[reason] += 1
        if reason == "near_duplicate":
            self.near_jaccard_sum += extra["jaccard"]
            self.near_jaccard_min = min(self.near_jaccard_min, extra["jaccard"])
        shown = self.examples.setdefault(reason, [])
        if len(shown) < limit:
            cut = text[:EXAMPLE_CHARS] + ("..." if len(text) > EXAMPLE_CHARS else "")
            shown.append({"text": cut, "chars": len(text), **extra, **measures(reason, text)})

    def check(self) -> None:
        dropped = sum(self.dropped.values())
        if self.kept + dropped != self.documents_in:  # a bug, not a user error: keep the traceback
            raise AssertionError(f"documents lost: {self.documents_in} in, {self.kept} kept + {dropped} dropped")


def measures(reason: str, text: str) -> dict[str, Any]:
    """The values behind a quality or repetition drop, rounded for the report."""
    if reason in ("empty", "exact_duplicate", "near_duplicate"):
        return {}
    if reason in ("duplicate_lines", "duplicate_line_chars"):
        lines, chars = duplicate_line_fractions(text)
        return {"duplicate_line_fraction": round(lines, 4), "duplicate_line_char_fraction": round(chars, 4)}
    if reason.startswith(("top_", "duplicate_")):  # top_3gram, duplicate_7gram
        n = int(reason.split("_")[1][:-4])
        fn = top_ngram_char_fraction if reason.startswith("top_") else duplicate_ngram_char_fraction
        return {f"{reason}_char_fraction": round(fn(words(text), n), 4)}
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in quality_stats(text)._asdict().items()}


def build_report(tally: Tally, cfg: CleanConfig, inputs: list[str], out: str, resumed_from: int) -> dict:
    tally.check()
    near = tally.dropped.get("near_duplicate", 0)
    mb = tally.bytes_in / 1e6
    return {
        "inputs": inputs, "out": out,
        "documents_in": tally.documents_in, "kept": tally.kept,
        "dropped_total": sum(tally.dropped.values()),
        "dropped": dict(sorted(tally.dropped.items(), key=lambda kv: -kv[1])),
        "duplicates": {
            "exact": tally.dropped.get("exact_duplicate", 0), "near": near,
            "near_jaccard_mean": round(tally.near_jaccard_sum / near, 4) if near else None,
            "near_jaccard_min": round(tally.near_jaccard_min, 4) if near else None,
            "threshold": cfg.dedup.threshold, "lsh_threshold": round(lsh_threshold(cfg.dedup), 4),
            "num_perm": cfg.dedup.num_perm, "bands": cfg.dedup.bands, "shingle_size": cfg.dedup.shingle_size,
        },
        "pii": dict(sorted(tally.pii.items())),
        "bytes_in": tally.bytes_in, "bytes_out": tally.bytes_out,
        "seconds": round(tally.seconds, 3),
        "documents_per_second": round(tally.documents_in / tally.seconds, 1) if tally.seconds else None,
        "mb_per_second": round(mb / tally.seconds, 3) if tally.seconds else None,
        "resumed_from": resumed_from,
        "examples": tally.examples,
    }


def print_summary(report: dict) -> None:
    """The report as a rich table on stdout."""
    from rich.console import Console
    from rich.table import Table

    n = max(report["documents_in"], 1)
    table = Table(title=f"llmfs data clean -> {report['out']}", show_header=True)
    table.add_column("documents")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    table.add_row("in", f"{report['documents_in']:,}", "100.0%")
    table.add_row("kept", f"{report['kept']:,}", f"{100 * report['kept'] / n:.1f}%")
    for reason, count in report["dropped"].items():
        table.add_row(f"dropped: {reason}", f"{count:,}", f"{100 * count / n:.1f}%")
    for kind, count in report["pii"].items():
        table.add_row(f"masked: <|{kind}|>", f"{count:,}", "")
    console = Console()
    console.print(table)
    d = report["duplicates"]
    if d["near"]:
        console.print(f"near duplicates: estimated Jaccard mean {d['near_jaccard_mean']}, min {d['near_jaccard_min']}"
                      f" (threshold {d['threshold']}, LSH midpoint {d['lsh_threshold']})")
    console.print(f"{report['bytes_in'] / 1e6:.2f} MB in, {report['bytes_out'] / 1e6:.2f} MB out in "
                  f"{report['seconds']:.1f}s; examples of every drop reason in "
                  f"{Path(report['out']) / 'report.json'}")
