"""Writing a small text file so that a reader sees the old content or the new, never a torn one: write a
sibling `.tmp`, fsync it, rename it over the target (atomic on POSIX). Torch-free, so the data tools use it too.
Checkpoint directories are written the same way, a directory at a time (`llmfs/checkpoint.py`)."""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
