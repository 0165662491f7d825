"""The `llmfs bench` commands behind the CLI: run one suite (or all), print its table, compare it with a
baseline, write its JSON. The CLI only parses options and calls these.

A `--compare` file is read before anything is measured, so a wrong path fails in a second, not after the run.
"""

from __future__ import annotations

import sys

from llmfs.bench import report as rep

SUITES = ("train", "generate", "attention", "tokenizer", "moe")


def _device(name: str | None):
    from llmfs.runtime import resolve_device

    return resolve_device(name or "auto")


def _progress(suite: str, keys):
    def show(row: dict) -> None:
        print(f"{suite}: " + " ".join(str(row.get(k)) for k in keys) + " done", file=sys.stderr, flush=True)
    return show


def _check_compare(compare: str | None, suite: str) -> None:
    if compare is not None:
        rep.load_baseline(compare, suite)


def train(*, sizes=(), quick=False, amp=False, compile=False, profile=None, device=None, json_path=None,
          compare=None, batch=None, matmul_precision="highest") -> dict:
    from llmfs.bench import train as suite

    suite.check_sizes(sizes)
    suite.check_batch(batch)
    suite.check_matmul_precision(matmul_precision)
    _check_compare(compare, "train")
    dev = _device(device)
    sizes = list(sizes) or (["tiny"] if quick else list(suite.DEFAULT_SIZES.get(dev.type, ("tiny", "small"))))
    import torch

    torch.set_float32_matmul_precision(matmul_precision)  # the steps, the profile and the MFU peak; restored below
    try:
        result = suite.run(sizes, dev, amp=amp, compile=compile, quick=quick, batch=batch,
                           progress=_progress("train", suite.KEYS))
        table = None
        if profile is not None:
            prof = suite.profile(suite.size(sizes[0], batch), dev, profile)
            table = prof.pop("table")
            result["profile"] = prof
    finally:
        torch.set_float32_matmul_precision("highest")
    result = rep.finish(result, suite.COLUMNS, suite.METRICS, json_path=json_path, compare_path=compare)
    if table is not None:
        print(f"torch.profiler: {prof['steps']} training steps of size {sizes[0]}; trace: "
              f"{', '.join(prof['trace_files'])} (open in TensorBoard, chrome://tracing or Perfetto)")
        print(table)
    return result


def attention(*, quick=False, device=None, json_path=None, compare=None) -> dict:
    from llmfs.bench import attention as suite

    _check_compare(compare, "attention")
    result = suite.run(_device(device), quick=quick, progress=_progress("attention", suite.KEYS))
    return rep.finish(result, suite.COLUMNS, suite.METRICS, json_path=json_path, compare_path=compare)


def moe(*, quick=False, device=None, json_path=None, compare=None) -> dict:
    from llmfs.bench import moe as suite

    _check_compare(compare, "moe")
    result = suite.run(_device(device), quick=quick, progress=_progress("moe", suite.KEYS))
    return rep.finish(result, suite.COLUMNS, suite.METRICS, json_path=json_path, compare_path=compare)


def tokenizer(*, inputs=(), vocab_sizes=(), workers=1, quick=False, json_path=None, compare=None) -> dict:
    from llmfs.bench import tokenizer as suite

    _check_compare(compare, "tokenizer")
    result = suite.report(list(inputs), quick=quick, vocab_sizes=list(vocab_sizes) or None, workers=workers)
    columns = [rep.Column(k, k) for k in suite.KEYS] + [rep.Column(k, k, ",.3f") for k in (
        "seconds", "cpu_seconds", "time_vs_tokenizers", "peak_rss_mib", "bytes_per_token", "encode_mb_s")]
    return rep.finish(result, columns, ("seconds", "cpu_seconds", "peak_rss_mib", "encode_mb_s"),
                      json_path=json_path, compare_path=compare)


def generate(*, sizes=(), quick=False, new_tokens=None, hf=True, device=None, json_path=None, compare=None,
             out=None, compile=False) -> dict:
    from llmfs.bench import generate as suite

    suite.check_sizes(sizes)
    _check_compare(compare, "generate")
    result = suite.report(list(sizes) or None, quick=quick, new_tokens=new_tokens, hf=hf,
                          device=_device(device), progress=_progress("generate", suite.KEYS), compile=compile)
    result = rep.finish(result, suite.COLUMNS, suite.METRICS, json_path=json_path, compare_path=compare)
    if out is not None:
        from pathlib import Path

        from llmfs.bench.timing import describe

        Path(out).write_text("\n".join([describe(result["env"]), "", suite.format_table(result["rows"]), "",
                                        *result["notes"]]) + "\n", encoding="utf-8")
    return result


def grpo(*, checkpoint=None, steps=None, trl=True, quick=False, json_path=None, compare=None) -> dict:
    from llmfs.bench import grpo as suite

    _check_compare(compare, "grpo")
    result = suite.run(checkpoint, quick=quick, steps=steps, trl=trl, progress=_progress("grpo", suite.KEYS))
    return rep.finish(result, suite.COLUMNS, suite.METRICS, json_path=json_path, compare_path=compare)


def run_all(*, quick=False, device=None, json_path=None, compare=None) -> dict:
    """Every suite in turn (each printed as it finishes), then one report whose rows carry their `suite`."""
    _check_compare(compare, "all")
    runs = {"train": lambda: train(quick=quick, device=device), "generate": lambda: generate(quick=quick,
            device=device), "attention": lambda: attention(quick=quick, device=device),
            "tokenizer": lambda: tokenizer(quick=quick), "moe": lambda: moe(quick=quick, device=device)}
    reports = {name: fn() for name, fn in runs.items()}
    keys = ["suite"] + list(dict.fromkeys(k for r in reports.values() for k in r["keys"]))
    rows = [{"suite": name, **row} for name, r in reports.items() for row in r["rows"]]
    notes = [f"{name}: {note}" for name, r in reports.items() for note in r["notes"]]
    result = rep.make("all", reports["train"]["env"], keys, rows, notes)
    result["envs"] = {name: r["env"] for name, r in reports.items()}
    result["suite_keys"] = {name: r["keys"] for name, r in reports.items()}
    if compare is not None:
        ratios = rep.compare(result, rep.load_baseline(compare, "all"))
        rep.print_comparison(result, ratios, ("tok_s", "decode_tok_s", "fwdbwd_tok_s", "seconds"), compare)
        result["compare"] = {"baseline": str(compare), "rows": ratios}
    if json_path is not None:
        rep.write_json(result, json_path)
    return result
