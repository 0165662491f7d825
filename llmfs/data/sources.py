r"""Input specs -> documents: the one place llmfs reads raw text.

A spec (expanded by `llmfs.data.tables.expand`) is one of
- a text file (any name not ending in .jsonl / .json / .parquet), read as UTF-8 with newlines kept as they are;
  a line that holds only the document separator (default `<|endoftext|>`, the TinyStories convention) ends a
  document and is dropped; without separators the whole file is one document;
- a `.jsonl` / `.json` / `.parquet` file, one document per row: the column named by `field` (default `text`),
  read through the record path (`llmfs.data.records.source_records`, so text and records share one table reader);
- a folder: every such file under it, recursively, in sorted path order (hidden files skipped);
- `builtin:NAME?...`: a built-in text source (`builtin:stories`), training split;
- anything else that is not a local path is taken as a hub dataset name (`owner/name[?config=NAME]`), split
  "train", read through `datasets` in streaming mode, its text in the column `field`.

Nothing holds a whole corpus: documents are produced as `Piece`s of about `max_chars` characters. A long
document is cut only at a lone newline with a non-space character on both sides ("x\nY"). No alternative of
either split pattern (`llmfs.tokenizer.patterns`) matches across that position, and the newline is a pre-token of
its own whether "Y" or the end of the piece follows (a longer whitespace run is not: GPT-2's `\s+(?!\S)` splits
"\n\n" before a letter but not at the end of a string, and likewise "\r\n"), so pre-tokenizing (and therefore
encoding) the pieces one by one gives exactly the pre-tokens of the whole document (tests/data/test_sources.py).
A document with no such position (one huge line, CRLF line ends) stays one piece.

Missing, empty, unreadable or non-UTF-8 inputs raise a one-line `DataError` naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from llmfs.data.records import source_records
from llmfs.data.tables import expand, is_local, is_table
from llmfs.errors import DataError

TEXT_HINT = 'set the text field to "{column}"'  # callers say where it is set (--field, data.text_field)
DEFAULT_MAX_CHARS = 1 << 16  # 64 Ki characters per piece: small transient buffers, still few Python calls


class Piece(NamedTuple):
    """A slice of one document. `end` is True on the last piece of a document."""

    text: str
    end: bool


def iter_pieces(specs: Sequence[str | Path], *, separator: str = "<|endoftext|>",
                max_chars: int = DEFAULT_MAX_CHARS, field: str = "text", cache_dir: str | Path | None = None,
                hint: str = TEXT_HINT) -> Iterator[Piece]:
    """Every document of every spec, in order, as bounded pieces. `field` is the text column of tables and hub
    datasets; `cache_dir` goes to `datasets` (default: tables.DEFAULT_CACHE_DIR); `hint` is the fix shown when a
    table has no such column (formatted with `column`). Raises DataError when a spec is missing, holds no text,
    or cannot be read."""
    if not specs:
        raise DataError("no input given: pass at least one file, folder or hub dataset name with --input")
    expanded = [(spec, expand(spec)) for spec in specs]  # every spec checked before any is read
    for spec, sources in expanded:
        seen = False
        for path_or_name in sources:
            for piece in read_source(path_or_name, separator, max_chars, field, cache_dir, hint):
                seen = seen or bool(piece.text)
                yield piece
        if not seen:
            raise DataError(f"{spec}: input holds no text (empty file or folder); give a non-empty input")


def iter_documents(specs: Sequence[str | Path], *, separator: str = "<|endoftext|>", field: str = "text",
                   cache_dir: str | Path | None = None, hint: str = TEXT_HINT) -> Iterator[str]:
    """Whole documents as strings (a document is held in memory at once; use `iter_pieces` to stream)."""
    parts: list[str] = []
    for piece in iter_pieces(specs, separator=separator, field=field, cache_dir=cache_dir, hint=hint):
        parts.append(piece.text)
        if piece.end:
            yield "".join(parts)
            parts = []


def read_source(source: str | Path, separator: str, max_chars: int, field: str, cache_dir: str | Path | None,
                hint: str) -> Iterator[Piece]:
    """The pieces of one expanded source (a file, a hub name or a built-in spec); an empty one yields nothing."""
    if isinstance(source, str) and source.startswith("builtin:"):
        yield from _read_builtin(source, max_chars)
    elif is_local(source) and not is_table(source):
        yield from _read_text(source, separator, max_chars)
    else:  # a table file or a hub dataset: one document per row
        for record in source_records(source, required=("text",), fields={"text": field}, cache_dir=cache_dir,
                                     hint=hint):
            yield from cut(record["text"], max_chars)


def _read_text(path: Path, separator: str, max_chars: int) -> Iterator[Piece]:
    """Stream a text file line by line; cut a long document only where `_safe_cut` allows."""
    buf: list[str] = []
    size = 0
    try:
        with open(path, encoding="utf-8", newline="") as f:  # newline="": keep \r\n as written
            for line in f:
                if line.rstrip("\r\n") == separator:
                    if buf:  # two separators in a row make no empty document
                        yield Piece("".join(buf), True)
                    buf, size = [], 0
                    continue
                if size >= max_chars and _safe_cut(buf[-1], line):
                    yield Piece("".join(buf), False)
                    buf, size = [], 0
                buf.append(line)
                size += len(line)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({_locate_bad_utf8(path) or e.reason}); convert it to UTF-8") \
            from None
    except OSError as e:
        raise DataError(f"{path}: cannot read file ({e.strerror}); check its permissions") from None
    if buf:
        yield Piece("".join(buf), True)


def read_utf8(path: Path) -> str:
    """The whole text of a file a user named (prompts, pairs to score), or a one-line DataError saying where it
    is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({_locate_bad_utf8(path) or e.reason}); convert it to UTF-8") \
            from None
    except OSError as e:
        raise DataError(f"{path}: cannot read file ({e.strerror}); check its permissions") from None


def _locate_bad_utf8(path: Path) -> str:
    """Where the first invalid UTF-8 byte is ("byte b'\\xe9' on line 3"). The decoder's error offset counts from
    its read buffer, so the file is scanned again line by line in binary (a newline byte never sits inside a
    multi-byte character, so each line decodes on its own)."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return f"byte {raw[e.start:e.start + 1]!r} on line {line_no}"
    return ""


def _safe_cut(before: str, after: str) -> bool:
    """Whether text may be cut between `before` and `after` (see the module docstring): "x\n" | "Y"."""
    return (len(before) >= 2 and before[-1] == "\n" and not before[-2].isspace()
            and after[:1] != "" and not after[0].isspace())


def cut(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> Iterator[Piece]:
    """One document as pieces of about `max_chars`, cut only where `_safe_cut` allows (a piece is a
    NamedTuple: `piece.text`, `piece.end`)."""
    start = 0
    pos = start + max_chars
    while pos < len(text):
        pos = text.find("\n", pos)
        if pos < 0:
            break
        if pos + 1 < len(text) and _safe_cut(text[pos - 1:pos + 1], text[pos + 1]):
            yield Piece(text[start:pos + 1], False)
            start = pos + 1
            pos = start + max_chars
        else:
            pos += 1
    yield Piece(text[start:], True)


def _read_builtin(spec: str, max_chars: int) -> Iterator[Piece]:
    """The training split of a built-in text source (`builtin:stories`), one document per record."""
    from llmfs.data.builtin import iter_builtin

    for record in iter_builtin(spec, split="train"):
        if "text" not in record:
            raise DataError(f"{spec}: records have no 'text' field ({', '.join(record)}); use a text source "
                            "such as builtin:stories")
        yield from cut(record["text"], max_chars)
