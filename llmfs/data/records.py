"""Records for the stages after pretraining: any source, canonical field names, checked before the first one.

    iter_records("builtin:instructions?n=500", required=["messages"])                       # SFT
    iter_records("prefs/", required=["prompt", "chosen", "rejected"])                         # reward model
    iter_records("openai/gsm8k?config=main", required=["prompt"],                              # RL prompts
                 fields={"prompt": "question", "answer": "answer"}, split="test")

Sources (expanded by tables.py): `builtin:NAME?...` (split and seed honoured; its records already use the
canonical names, so `fields` does not apply to it), a `.jsonl` / `.json` / `.parquet` file, a folder of them (other
files, such as a downloaded snapshot's README.md, are skipped), or a hub dataset `owner/name[?config=NAME]` whose
`split` is passed to `datasets`. A local file or folder holds one split, "train"; a stage that needs held-out
rows from it holds them out by content hash (llmfs/data/builtin/split.py), as pretraining does.

`fields` maps a canonical name to the source's column (`{"prompt": "question"}`): the column is renamed and every
other column is kept as it is (a mapped column replaces one already named like the canonical field). The first
record is read and checked when `iter_records` is called, before it returns: a missing field is one DataError
that names the source, the field, the columns the data has and the mapping that fixes it. Every row is then
type-checked as it streams (rows are counted from 1): `text`, `chosen` and `rejected` are strings, `messages` is
a non-empty list of `{role, content}` dicts with roles system / user / assistant, and `prompt` is either: a string,
or such a list (the conversation so far, as `builtin:preferences` writes it and TRL's "conversational" format
does). Only the fields the caller asked for (`required` and the keys of `fields`) are checked; `answer` may be
any value.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from llmfs.data.tables import expand, is_local, is_table, read_rows
from llmfs.errors import DataError

# The record kinds the stages read, by the fields they need (`llmfs data stats --kind`).
RECORD_KINDS: dict[str, tuple[str, ...]] = {
    "text": ("text",),                                 # pretraining, tokenizers
    "chat": ("messages",),                             # sft
    "preference": ("prompt", "chosen", "rejected"),    # reward
    "prompt": ("prompt",),                             # ppo / grpo (+ optional `answer`)
}
ROLES = ("system", "user", "assistant")
STRING_FIELDS = ("text", "chosen", "rejected")
DEFAULT_HINT = 'set fields.{name} = "{column}"'  # a later stage's recipe key; CLI callers pass their flag
BUILTIN_HINT = ("use a built-in source that has it: stories (text), instructions (messages), preferences "
                "(prompt, chosen, rejected), arithmetic (prompt, answer)")  # tests/data/test_records.py checks it
# Column names public datasets use for the canonical fields; only used to suggest a mapping in an error.
SYNONYMS = {
    "text": ("content", "story", "document", "body"),
    "prompt": ("question", "instruction", "query", "problem", "input"),
    "messages": ("conversations", "conversation", "dialog", "chat"),
    "chosen": ("response_chosen", "preferred", "better"),
    "rejected": ("response_rejected", "dispreferred", "worse"),
    "answer": ("solution", "target", "output", "label"),
}


def iter_records(spec: str | Path, *, required: Sequence[str], fields: Mapping[str, str] | None = None,
                 split: str = "train", seed: int = 0, cache_dir: str | Path | None = None,
                 hint: str = DEFAULT_HINT) -> Iterator[dict]:
    """The records of one source with canonical keys. Raises DataError now (not on first iteration) when the
    source is missing or empty or its first record lacks a field; later rows raise as they arrive. `hint` is the
    fix shown for a missing field, formatted with `name` (canonical) and `column`; `cache_dir` goes to every
    `datasets.load_dataset` call (default: tables.DEFAULT_CACHE_DIR)."""
    spec_text = str(spec)
    if spec_text.startswith("builtin:"):
        from llmfs.data.builtin import iter_builtin

        records = _checked(iter_builtin(spec_text, split=split, seed=seed), spec_text, required, {}, None)
    else:
        sources = expand(spec)
        if Path(spec).is_dir():
            sources = [s for s in sources if is_table(s)]
            if not sources:
                raise DataError(f"{spec}: folder holds no .jsonl / .json / .parquet files; records are read "
                                "from tables")
        for s in sources:
            if is_local(s) and not is_table(s):
                raise DataError(f"{s}: records are read from .jsonl / .json / .parquet files, not "
                                f"'{s.suffix or s.name}'; convert it to JSON lines")
        records = itertools.chain.from_iterable(
            source_records(s, required=required, fields=fields, split=split, cache_dir=cache_dir, hint=hint)
            for s in sources)
    try:
        first = next(records)
    except StopIteration:
        raise DataError(f"{spec}: holds no records (empty file, folder or split); give a non-empty source") \
            from None
    return itertools.chain([first], records)


def split_records(train: str, valid: str, split: str, *, required: Sequence[str] = (),
                  fields: Mapping[str, str] | None = None, valid_fraction: float, cache_dir: str | Path | None = None,
                  seed: int = 0) -> tuple[list[dict], str]:
    """(records, a name for messages) of one split of a stage's data: `train` is the training source and `valid`
    the held-out one ("" = hold out from `train`). A builtin source gives its own split; any other source held
    out from is divided by content hash (the lowest `valid_fraction` of hashes, llmfs/data/builtin/split.py), so
    a record is never on both sides."""
    import json

    from llmfs.data.builtin.split import wanted

    spec = valid if split == "valid" and valid else train
    if spec.startswith("builtin:"):
        return list(iter_records(spec, required=required, split=split, seed=seed)), f"{spec} ({split})"
    records = iter_records(spec, required=required, fields=fields, cache_dir=cache_dir)
    if valid:  # an explicit validation source: each side is used whole
        return list(records), spec
    return [r for r in records if wanted(json.dumps(r, sort_keys=True, default=str), split, valid_fraction)], \
        f"{spec} ({split})"


def source_records(source: str | Path, *, required: Sequence[str], fields: Mapping[str, str] | None = None,
                   split: str = "train", cache_dir: str | Path | None = None,
                   hint: str = DEFAULT_HINT) -> Iterator[dict]:
    """The rows of one expanded table source (a file or a hub name), renamed and checked. The text path
    (sources.py) reads tables through this too, with `required=("text",)`."""
    where = str(source) if is_local(source) else f"hub dataset {source}"
    yield from _checked(read_rows(source, split=split, cache_dir=cache_dir), where, required, fields or {}, hint)


def _checked(rows, where: str, required: Sequence[str], fields: Mapping[str, str],
             hint: str | None) -> Iterator[dict]:
    """Rename and check rows; `hint` None marks a built-in source (nothing to map: pick another source)."""
    fields = {name: column for name, column in fields.items() if name != column}
    names = list(dict.fromkeys([*required, *fields]))
    for n, row in enumerate(rows, 1):
        if n == 1:
            _check_fields(row, where, required, fields, hint)
        record = dict(row)
        for name, column in fields.items():
            if column not in record:  # rows of one table may differ (a later file of a folder, ragged JSON)
                raise DataError(f"{where}: row {n}: no '{column}' column (fields: {', '.join(row)})")
            record[name] = record.pop(column)
        for name in names:
            if name not in record and name in required:
                raise DataError(f"{where}: row {n}: no '{name}' field (fields: {', '.join(row)})")
            if name in record:
                _check_type(record[name], name, where, n)
        yield record


def _check_fields(row: Mapping, where: str, required: Sequence[str], fields: Mapping[str, str],
                  hint: str | None) -> None:
    have = ", ".join(row) or "none"
    for name, column in fields.items():
        if column not in row:
            raise DataError(f"{where}: rows have no '{column}' column to use as '{name}' (fields: {have}); fix "
                            f"the mapping: {hint.format(name=name, column=_guess(name, row))}")
    for name in required:
        if name not in row and name not in fields:
            fix = BUILTIN_HINT if hint is None else \
                f"map a column to it: {hint.format(name=name, column=_guess(name, row))}"
            raise DataError(f"{where}: rows have no '{name}' field (fields: {have}); {fix}")


def _guess(name: str, row: Mapping) -> str:
    """A column of `row` that probably holds `name` (for the hint only), else a placeholder."""
    lowered = {str(c).lower(): str(c) for c in row}
    for candidate in (name, *SYNONYMS.get(name, ())):
        if candidate in lowered:
            return lowered[candidate]
    return "<column>"


def _check_type(value, name: str, where: str, n: int) -> None:
    if name in STRING_FIELDS and not isinstance(value, str):
        raise DataError(f"{where}: row {n}: '{name}' must be a string, got {_kind(value)}")
    if name == "prompt" and not isinstance(value, (str, list)):
        raise DataError(f"{where}: row {n}: 'prompt' must be a string or a list of {{role, content}} dicts, got "
                        f"{_kind(value)}")
    if name == "messages" or (name == "prompt" and isinstance(value, list)):
        if not isinstance(value, list) or not value:
            raise DataError(f"{where}: row {n}: '{name}' must be a non-empty list of {{role, content}} dicts, "
                            f"got {_kind(value)}")
        for j, m in enumerate(value):
            if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
                got = ", ".join(map(str, m)) if isinstance(m, Mapping) else _kind(m)
                raise DataError(f"{where}: row {n}: {name}[{j}] must be a {{role, content}} dict, got {got}; "
                                "convert other chat formats (e.g. {from, value}) to role / content")
            if m["role"] not in ROLES:
                raise DataError(f"{where}: row {n}: {name}[{j}] role {m['role']!r} is not one of {', '.join(ROLES)}")
            if not isinstance(m["content"], str):
                raise DataError(f"{where}: row {n}: {name}[{j}] content must be a string, got "
                                f"{_kind(m['content'])}")


def _kind(value) -> str:
    return "null" if value is None else f"{type(value).__name__} {repr(value)[:40]}"
