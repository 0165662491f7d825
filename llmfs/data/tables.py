r"""Specs -> inputs, and the rows of tables: the one place llmfs calls `datasets.load_dataset`.

Both readers build on this file: the text path (`sources.py`, documents for tokenizers and pretraining) and the
record path (`records.py`, messages / preferences / prompts for the later stages). A spec is

- `builtin:NAME?key=value&...`: a built-in source (llmfs/data/builtin), passed through as it is;
- an existing file, or a folder: every file under it, recursively, in sorted path order (hidden files skipped);
- anything else that is not a local path: a hub dataset `owner/name`, optionally `owner/name?config=NAME` for a
  dataset with several configurations (`openai/gsm8k?config=main`).

Tables (`.jsonl` / `.json` / `.parquet` files and hub datasets) are read through `datasets` in streaming mode, so
nothing holds a whole table. Every `load_dataset` call gets an explicit `cache_dir` (default
`DEFAULT_CACHE_DIR`, relative to the working directory): even a streamed local file leaves a lock file in
`~/.cache/huggingface/datasets` otherwise, and a hub dataset its downloads. A local file holds one split,
"train" (the json / parquet builders name it so); a hub dataset has the splits its authors made.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

from llmfs.errors import DataError

TABLE_SUFFIXES = (".jsonl", ".json", ".parquet")
DEFAULT_CACHE_DIR = Path(".llmfs_cache") / "datasets"  # documented in README.md (Data) and the CLI help
HUB_KEYS = ("config", "split")
# a missing local file with one of these endings is a typo, not a hub name ("teknium/OpenHermes-2.5" is one)
DATA_SUFFIXES = (".txt", ".text", ".md", ".json", ".jsonl", ".parquet", ".csv", ".tsv", ".gz", ".zst", ".arrow")


def is_table(path: Path) -> bool:
    return path.suffix.lower() in TABLE_SUFFIXES


def expand(spec: str | Path) -> list[str | Path]:
    """The files (or the hub name, or the built-in source) one spec stands for. A missing path or an empty
    folder raises DataError here, before anything is read."""
    if str(spec).startswith("builtin:"):
        from llmfs.data.builtin import parse_builtin

        parse_builtin(str(spec))  # an unknown name or parameter fails here, before anything is read
        return [str(spec)]
    path = Path(spec)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise DataError(f"{spec}: folder holds no files; give a folder of .txt / .jsonl / .parquet files")
        return list(files)
    text = str(spec)
    name = text.partition("?")[0]
    looks_like_hub = (name.count("/") == 1 and not name.startswith((".", "/", "~"))
                      and Path(name).suffix.lower() not in DATA_SUFFIXES)
    if not looks_like_hub:
        raise DataError(f"{spec}: input not found; give an existing file or folder, or a hub dataset as owner/name")
    parse_hub(text)
    return [text]


def parse_hub(spec: str) -> tuple[str, str | None, str | None]:
    """`"openai/gsm8k?config=main&split=test"` -> `("openai/gsm8k", "main", "test")`; `"owner/name"` ->
    `("owner/name", None, None)`. A split named in the spec wins over the one the stage reads (so
    `data.valid = "openai/gsm8k?config=main&split=test"` holds out gsm8k's test split, not its train split)."""
    name, _, query = spec.partition("?")
    values = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(values) - set(HUB_KEYS))
    if unknown:
        raise DataError(f"{spec}: unknown parameter '{unknown[0]}' for a hub dataset (allowed: {', '.join(HUB_KEYS)})")
    return name, values.get("config") or None, values.get("split") or None


def is_local(source: str | Path) -> bool:
    """Whether an expanded source is a local file (not a hub name, not a built-in spec)."""
    return isinstance(source, Path)


def check_local_split(spec: str | Path, split: str) -> None:
    """A local file or folder is one split, "train"; asking it for another would silently give training data."""
    if split != "train":
        raise DataError(f"{spec}: a local file or folder holds one split, 'train', not {split!r}; give the "
                        f"{split} data as a file of its own")


def read_rows(source: str | Path, *, split: str = "train", cache_dir: str | Path | None = None) -> Iterator[dict]:
    """The rows of one expanded table source (a local .jsonl / .json / .parquet file, or a hub name), streamed
    through `datasets`. An empty local file yields nothing; an unreadable one, or a hub dataset that cannot be
    loaded, raises a one-line DataError."""
    import datasets  # heavy import, only for table inputs

    cache = str(DEFAULT_CACHE_DIR if cache_dir is None else cache_dir)
    if is_local(source):
        check_local_split(source, split)
        builder = "parquet" if source.suffix.lower() == ".parquet" else "json"
        if source.stat().st_size == 0:
            return
        try:
            yield from datasets.load_dataset(builder, data_files=str(source), split="train", streaming=True,
                                             cache_dir=cache)
        except Exception as e:  # datasets raises many types for a malformed file; each becomes one clear line
            raise DataError(f"{source}: cannot read as {builder} ({_first_line(e)})") from None
        return
    name, config, named_split = parse_hub(source)
    split = named_split or split
    try:
        yield from datasets.load_dataset(name, config, split=split, streaming=True, cache_dir=cache)
    except Exception as e:  # offline (ConnectionError), unknown name, no such split or config: one clear line
        raise DataError(f"{source}: not a local path, and loading it as a hub dataset (split {split!r}) failed "
                        f"({_first_line(e)}); if offline, download it elsewhere and pass the local .jsonl / "
                        ".parquet file or folder instead") from None


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__
