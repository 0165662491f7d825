"""`llmfs data clean`: read -> normalise -> filter -> mask PII -> dedup -> write, streaming and resumable.

    run(["raw/"], "clean_out", load_clean_recipe("recipe.toml"), workers=2)

Writes, under OUT:
- clean.jsonl: one `{"text": ...}` per kept document, in input order (`llmfs tokenize --input OUT/clean.jsonl`);
- dropped.jsonl (`write_dropped`): one `{"reason", "text", ...}` per dropped document, normalised and PII-masked
  like the kept ones (so neither it nor the report's examples leak what was masked);
- report.json: counts in / kept / dropped per reason, duplicates, PII replacements per type, examples;
- state.json and dedup_index.jsonl: the resume checkpoint (state.py) and the kept documents' dedup keys.

Memory is constant in the corpus size except for the dedup index (dedup.py: about 1.5 KiB per kept document
at the defaults). With `workers` > 1 the per-document steps (document.py) run in a process pool over batches of
documents, at most two batches in flight; results come back in input order and dedup runs here, in order, so
the output is identical for any number of workers.
"""

from __future__ import annotations

import base64
import itertools
import json
import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from llmfs.atomic import write_text_atomic
from llmfs.config import to_dict
from llmfs.data.clean.config import CleanConfig
from llmfs.data.clean.dedup import Deduplicator, band_keys
from llmfs.data.clean.document import DocumentSteps, Outcome
from llmfs.data.clean.inputs import Document, iter_inputs
from llmfs.data.clean.report import Tally, build_report
from llmfs.data.clean.state import fingerprint, load_state, open_outputs, save_state
from llmfs.errors import DataError

CLEAN, DROPPED, INDEX, REPORT = "clean.jsonl", "dropped.jsonl", "dedup_index.jsonl", "report.json"
BATCH_PER_WORKER = 256  # documents per worker per batch: enough to amortise the pool's pickling


class Interrupted(RuntimeError):
    """Raised by `run(..., stop_after=N)`: the test hook that simulates a crash after N documents."""


def run(inputs: list[str], out: str | Path, cfg: CleanConfig, *, workers: int = 1, quiet: bool = False,
        field: str = "text", cache_dir: str | Path | None = None, stop_after: int | None = None,
        hint: str = 'set the text field with --field {column}') -> dict[str, Any]:
    """Clean `inputs` into `out` (resuming an unfinished run there); returns the report."""
    if workers < 1:
        raise DataError(f"--workers {workers}: must be at least 1")
    out = Path(out)
    # local inputs by absolute path (the same run from another directory); hub names and builtin: specs as given
    names = [str(Path(i).resolve()) if Path(i).exists() else str(i) for i in inputs]
    outputs = (CLEAN, INDEX) + ((DROPPED,) if cfg.write_dropped else ())
    docs = iter_inputs(inputs, split=cfg.split, field=field, cache_dir=cache_dir, hint=hint,
                       html_to_text=cfg.normalize.enabled and cfg.normalize.html)  # inputs checked here
    out.mkdir(parents=True, exist_ok=True)
    print_ = fingerprint(names, field, to_dict(cfg))
    state = load_state(out, print_, outputs) or {
        "fingerprint": print_, "consumed": 0, "offsets": {name: 0 for name in outputs}, "done": False,
        "tally": Tally().to_dict()}
    resumed_from = state["consumed"]
    tally = Tally.from_dict(state["tally"])
    files = open_outputs(out, state["offsets"])
    try:
        dedup = _replay(out / INDEX, cfg)
        if resumed_from == 0:
            save_state(out, files, state)  # from here on OUT is a resumable run
        _clean(itertools.islice(docs, resumed_from, None), cfg, dedup, tally, files, state, out,
               workers=workers, quiet=quiet, stop_after=stop_after)
        # the report before the state says done: a crash between the two resumes (with nothing left to clean)
        # and writes both again, instead of refusing a finished run whose report.json is missing
        report = build_report(tally, cfg, names, str(out), resumed_from)
        write_text_atomic(out / REPORT, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        state["done"] = True
        save_state(out, files, state)
    finally:
        for f in files.values():
            f.close()
    return report


def _clean(docs: Iterable[Document], cfg: CleanConfig, dedup: Deduplicator, tally: Tally, files: dict,
           state: dict, out: Path, *, workers: int, quiet: bool, stop_after: int | None) -> None:
    from llmfs.tokenizer.progress import Progress

    steps = DocumentSteps(cfg)
    started, consumed_now = time.perf_counter(), 0
    with Progress(quiet) as progress:
        task = progress.add("cleaning", total=None, unit="docs")
        for doc, outcome in _ordered_map(steps, docs, workers):
            tally.documents_in += 1
            tally.bytes_in += len(doc.text.encode("utf-8"))
            _decide(outcome, cfg, dedup, tally, files)
            state["consumed"] += 1
            consumed_now += 1
            progress.advance(task, 1)
            if state["consumed"] % cfg.checkpoint_every == 0:
                _checkpoint(out, files, state, tally, started)
                started = time.perf_counter()
            if stop_after is not None and consumed_now >= stop_after:
                raise Interrupted(f"stopped after {consumed_now} documents (test hook)")
        progress.done(task)
    _checkpoint(out, files, state, tally, started)


def _checkpoint(out: Path, files: dict, state: dict, tally: Tally, started: float) -> None:
    tally.seconds += time.perf_counter() - started
    state["tally"] = tally.to_dict()
    save_state(out, files, state)


def _decide(o: Outcome, cfg: CleanConfig, dedup: Deduplicator, tally: Tally, files: dict) -> None:
    """Keep or drop one document (in input order) and write it where it goes."""
    extra: dict[str, Any] = {}
    reason = o.reason
    if reason is None and (cfg.dedup.exact or cfg.dedup.near):
        match = dedup.check(o.key, o.signature, o.bands)
        if match is not None:
            reason, extra = match.reason, {"kept_line": match.kept + 1, "jaccard": round(match.jaccard, 4)}
    if reason is not None:
        tally.drop(reason, o.masked, cfg.examples, **extra)
        if DROPPED in files:
            files[DROPPED].write(_line({"reason": reason, **extra, "text": o.masked}))
        return
    dedup.add(o.key, o.signature, o.bands)
    files[INDEX].write(_line({"k": o.key.hex(), "s": base64.b64encode(o.signature).decode("ascii")}))
    line = _line({"text": o.masked})
    files[CLEAN].write(line)
    tally.kept += 1
    tally.bytes_out += len(line)
    tally.pii.update(o.pii)


def _line(record: dict) -> bytes:
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")


def _replay(path: Path, cfg: CleanConfig) -> Deduplicator:
    """The dedup index of the kept documents so far (empty for a new run), from dedup_index.jsonl."""
    dedup = Deduplicator(cfg.dedup)
    if path.exists():
        with open(path, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                signature = base64.b64decode(row["s"])
                dedup.add(bytes.fromhex(row["k"]), signature,
                          band_keys(signature, cfg.dedup.bands) if signature else ())
    return dedup


def _ordered_map(fn: Callable[[Document], Outcome], items: Iterable[Document],
                 workers: int) -> Iterator[tuple[Document, Outcome]]:
    """(item, fn(item)) in input order; with workers > 1 in a process pool, at most two batches in flight."""
    if workers == 1:
        for item in items:
            yield item, fn(item)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    size = workers * BATCH_PER_WORKER
    chunks = iter(lambda: list(itertools.islice(items, size)), [])
    with multiprocessing.get_context(method).Pool(workers) as pool:
        pending = None
        for batch in chunks:
            job = (batch, pool.map_async(fn, batch, chunksize=max(1, len(batch) // (4 * workers))))
            if pending is not None:
                yield from zip(pending[0], pending[1].get())
            pending = job
        if pending is not None:
            yield from zip(pending[0], pending[1].get())
