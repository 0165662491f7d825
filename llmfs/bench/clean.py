"""Speed of `llmfs data clean` with every step on (a benchmark, not a test).

    python -m llmfs.bench.clean --input ../shared/data/tinystories-sample.txt --workers 1 2 --repeats 3

Runs the whole pipeline (read, normalise, quality and repetition filters, PII masking, exact + MinHash/LSH
dedup, writing clean.jsonl, dropped.jsonl, the dedup index and the checkpoints) with the default [clean]
settings into a fresh temporary directory per run, and prints documents/s and MB/s (UTF-8 bytes of the input
documents) of the best of `repeats` runs per worker count, plus the CPU time (user + system, this process and its
reaped pool workers) of that run. Results: docs/bench/clean.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(inputs: list[str], workers: int, repeats: int) -> dict:
    from llmfs.data.clean.config import CleanConfig
    from llmfs.data.clean.pipeline import run

    best = None
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            cpu, start = _cpu_seconds(), time.perf_counter()
            report = run(inputs, out, CleanConfig(), workers=workers, quiet=True)
            wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
        if best is None or wall < best["wall_s"]:
            best = {"workers": workers, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                    "documents": report["documents_in"], "kept": report["kept"], "mb": report["bytes_in"] / 1e6,
                    "documents_per_s": round(report["documents_in"] / wall, 1),
                    "mb_per_s": round(report["bytes_in"] / 1e6 / wall, 3), "dropped": report["dropped"]}
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", nargs="+", required=True)
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()}, {platform.machine()}, inputs {args.input}")
    for workers in args.workers:
        print(json.dumps(measure(args.input, workers, args.repeats)))


if __name__ == "__main__":
    main()
