"""The documents `llmfs data clean` reads, with the unit of cleaning chosen by `[clean] split`.

Inputs are read by `llmfs.data.sources` (the one reader of raw text), so a document is what it is everywhere
else: a `.jsonl` / `.json` / `.parquet` row (its `--field` column), a hub dataset row, a text file up to each
line holding only `<|endoftext|>` (the whole file when it has none: one `.txt` or `.html` page is one document).
`split = "paragraph"` cuts each of those further at blank lines and `split = "line"` at every newline; then
whitespace-only pieces are separators, not documents, and are not counted. With `split = "document"` every
document counts, even an empty one (the pipeline drops it as "empty").

An HTML page is turned into text by the worker that normalises it (normalize.py), except when it is to be split:
then its markup is converted here first (`html_to_text` True), so that paragraphs are cut in the text, not in
the markup.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from llmfs.data.sources import DEFAULT_MAX_CHARS, TEXT_HINT, read_source
from llmfs.data.tables import expand, is_local
from llmfs.errors import DataError

HTML_SUFFIXES = (".html", ".htm")
_PARAGRAPH = re.compile(r"\n[^\S\n]*\n\s*")


class Document(NamedTuple):
    text: str
    html: bool  # read from an .html / .htm file


def iter_inputs(specs: Sequence[str], *, split: str = "document", field: str = "text",
                cache_dir: str | Path | None = None, hint: str = TEXT_HINT,
                html_to_text: bool = True) -> Iterator[Document]:
    """Every document (or paragraph / line) of every spec, in order. Every spec is checked now, before this
    returns (a missing file raises DataError here); a spec that holds no text at all raises as it is read."""
    if not specs:
        raise DataError("no input given: pass at least one file, folder or hub dataset name with --input")
    expanded = [(spec, expand(spec)) for spec in specs]
    return _iterate(expanded, split, field, cache_dir, hint, html_to_text)


def _iterate(expanded: list, split: str, field: str, cache_dir: str | Path | None, hint: str,
             html_to_text: bool) -> Iterator[Document]:
    for spec, sources in expanded:
        seen = False
        for source in sources:
            html = is_local(source) and Path(source).suffix.lower() in HTML_SUFFIXES
            parts: list[str] = []
            for piece in read_source(source, "<|endoftext|>", DEFAULT_MAX_CHARS, field, cache_dir, hint):
                parts.append(piece.text)
                if not piece.end:
                    continue
                text, parts = "".join(parts), []
                seen = seen or bool(text)
                if split == "document":
                    yield Document(text, html)
                    continue
                if html and html_to_text:
                    from llmfs.data.clean.normalize import html_to_text as convert

                    text = convert(text)
                units = _PARAGRAPH.split(text) if split == "paragraph" else text.split("\n")
                yield from (Document(u, html and not html_to_text) for u in units if u.strip())
        if not seen:
            raise DataError(f"{spec}: input holds no text (empty file or folder); give a non-empty input")
