"""`llmfs plot RUN_DIR`: curves from metrics.jsonl as PNG files, so people can look instead of read.

Writes `loss.png` (training loss, and validation loss on the same axes), `bpb.png` (validation bits per byte),
`lr.png` and `throughput.png` (tokens/s, MFU when logged) into `RUN_DIR/plots/` (or `--out`). Needs the `plot`
extra (matplotlib); it draws with the non-interactive Agg backend, so it works without a display.
"""

from __future__ import annotations

import json
from pathlib import Path

from llmfs.errors import DataError, MissingExtraError


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise DataError(f"{run_dir}: no metrics.jsonl; give a run directory written by an llmfs stage")
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise DataError(f"{path}:{n}: not a JSON object (a truncated write?); delete that line") from None
    return records


def series(records: list[dict], kind: str, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `key` in the records of `kind`, skipping missing and null values."""
    pts = [(r["step"], r[key]) for r in records if r.get("kind") == kind and isinstance(r.get(key), (int, float))]
    return [p[0] for p in pts], [p[1] for p in pts]


FIGURES = {  # file -> [(kind, key, label)], drawn on one axes
    "loss.png": [("train", "loss", "train loss"), ("eval", "val_loss", "validation loss")],
    "bpb.png": [("eval", "val_bpb", "validation bits per byte")],
    "lr.png": [("train", "lr", "learning rate")],
    "throughput.png": [("train", "tok_per_s", "tokens / s")],
    "mfu.png": [("train", "mfu", "MFU")],
}


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    """Draw every figure that has data; returns the files written."""
    try:
        import matplotlib
    except ImportError:
        raise MissingExtraError("llmfs plot", "matplotlib", "plot") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    out_dir = Path(out) if out else run_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, lines in FIGURES.items():
        drawn = [(label, *series(records, kind, key)) for kind, key, label in lines]
        drawn = [d for d in drawn if d[1]]
        if not drawn:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        for label, steps, values in drawn:
            ax.plot(steps, values, label=label, marker="o" if len(steps) < 30 else None)
        ax.set_xlabel("step")
        ax.set_title(f"{run_dir.name}: {', '.join(d[0] for d in drawn)}")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=100)
        plt.close(fig)
        written.append(out_dir / name)
    if not written:
        raise DataError(f"{run_dir / 'metrics.jsonl'}: holds no training or evaluation values to plot yet")
    return written
