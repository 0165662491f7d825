"""Resume state of a clean run: OUT/state.json, written atomically at every checkpoint.

Outputs are append-only files written in input order. A checkpoint flushes and fsyncs them, then records the
number of input documents consumed, the byte length of every output file and the running tally; state.json is
written to a temporary file and renamed over the old one, so it is always a complete checkpoint. To resume, each
output is truncated to its recorded length (dropping whatever an interrupted run wrote after the checkpoint),
the dedup index is replayed from dedup_index.jsonl, and reading skips the consumed documents. The result is
byte-identical to an uninterrupted run (tests/data/test_clean_pipeline.py). JSON only, never pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, BinaryIO

from llmfs.errors import DataError

STATE_FILE = "state.json"
FORMAT_VERSION = 1


def fingerprint(inputs: list[str], field: str, config: dict[str, Any]) -> str:
    """What a resumed run must share with the run it continues."""
    text = json.dumps({"inputs": inputs, "field": field, "config": config}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_state(out: Path, print_: str, outputs: tuple[str, ...]) -> dict[str, Any] | None:
    """The state of an unfinished run in `out` with this fingerprint, None for a fresh start; refuses a
    finished run, another run's state, and outputs that no state accounts for."""
    path = out / STATE_FILE
    if not path.is_file():
        stray = [name for name in outputs if (out / name).exists()]
        if stray:
            raise DataError(f"{out / stray[0]}: exists but {path} does not, so it is not a resumable clean run; "
                            "choose a new --out or delete it")
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable clean state ({e}); delete {out} and start again") from None
    if state.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{path}: format_version {state.get('format_version')!r}, expected {FORMAT_VERSION}; "
                        "delete it and start again")
    if state["done"]:
        raise DataError(f"{out}: already holds a finished clean run (see report.json); choose a new --out or "
                        "delete it")
    if state["fingerprint"] != print_:
        raise DataError(f"{path}: this run was started with other inputs, --field or [clean] settings; resume "
                        "with the same ones or choose a new --out")
    for name, size in state["offsets"].items():
        have = (out / name).stat().st_size if (out / name).exists() else -1
        if have < size:
            raise DataError(f"{out / name}: shorter ({have} bytes) than its checkpoint ({size} bytes); the "
                            f"output was changed after the run stopped: delete {out} and start again")
    return state


def open_outputs(out: Path, offsets: dict[str, int]) -> dict[str, BinaryIO]:
    """Each output opened for appending after truncating it to its checkpointed length (0 for a new run)."""
    files = {}
    for name, size in offsets.items():
        path = out / name
        with open(path, "ab") as f:
            f.truncate(size)
        files[name] = open(path, "ab")
    return files


def save_state(out: Path, files: dict[str, BinaryIO], state: dict[str, Any]) -> None:
    """Flush and fsync the outputs, record their lengths in `state` and write it atomically."""
    for name, f in files.items():
        f.flush()
        os.fsync(f.fileno())
        state["offsets"][name] = f.tell()
    tmp = out / (STATE_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({**state, "format_version": FORMAT_VERSION}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / STATE_FILE)
