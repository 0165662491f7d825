"""Pretraining data: the tokenizer (given, or trained on the fly) and token shards per source, cached.

    RUN/tokenizer/                     tokenizer.json (+ vocab.json, merges.txt), trained here when
                                       `[tokenizer] path` is empty, on the first `train_chars` characters of
                                       the training sources
    RUN/data/NN-<slug>/train/          token shards (index.json + .bin) of source NN's training documents
    RUN/data/NN-<slug>/valid/          and of its validation documents

A built-in source gives its own `split = "valid"`; any other source (files, hub datasets) holds out, with
`data.valid_split = "hash"` (the default), the documents whose content hash falls in the lowest
`data.valid_fraction` (`llmfs/data/builtin/split.py`), so the same document can never be on both sides; with
`"tail"`, the last `valid_fraction` of the source's characters, cut at that exact character as nanoGPT's
`prepare.py` does (`data[:int(n * 0.9)]`), for a corpus that is one long document (tinyshakespeare). "tail" reads
the source twice: once to count its characters, once to split. Shards are reused when their index names the same tokenizer (sha256)
and source spec (and text field); otherwise they are rebuilt. Only rank 0 prepares; the other ranks wait and read.

Tables and hub datasets are read through `datasets` (llmfs/data/tables.py) with their text in the column
`data.text_field`, and `datasets` caches in `data.cache_dir`, by default RUN/data/hf_cache: a run's downloads
stay with the run and never land in ~/.cache/huggingface.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from llmfs.config import invalid, option
from llmfs.data.builtin.split import wanted
from llmfs.data.shards import INDEX_FILE, TokenShards
from llmfs.errors import DataError
from llmfs.tokenizer.registry import TokenizerConfig

SOURCE_FILE = "source.json"


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The pretraining `[data]` section."""

    sources: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"builtin:stories?size=4000000": 1.0})  # spec -> mixture weight
    valid_fraction: float = option(0.01, gt=0, lt=1, doc="held-out documents of non-builtin sources")
    valid_split: Literal["hash", "tail"] = "hash"  # hold out documents by content hash, or the source's last chars
    seq_len: int = option(256, ge=8, doc="tokens per training window")
    batch_size: int = option(32, ge=1, doc="windows per optimizer step, across processes and micro-batches")
    micro_batch_size: int = option(0, ge=0, doc="windows per forward per process; 0 = no accumulation")
    eval_windows: int = option(64, ge=1, doc="validation windows scored at each evaluation")
    text_field: str = option("text", doc="the text column of .jsonl / .parquet files and hub datasets")
    cache_dir: str = option("", doc="datasets' cache for tables and hub downloads; empty = RUN/data/hf_cache")

    def validate(self) -> None:
        if not self.sources:
            raise invalid("sources", "needs at least one source, e.g. {\"builtin:stories\" = 1.0}")
        if not self.text_field.strip():
            raise invalid("text_field", "must name a column, e.g. \"text\" or \"content\"")
        for spec, weight in self.sources.items():
            if weight <= 0:
                raise invalid(f"sources.{spec}", f"weight must be > 0, got {weight}")


def cache_dir(data: DataConfig, run_dir: Path) -> Path:
    """Where `datasets` caches for this run: `data.cache_dir`, else RUN/data/hf_cache."""
    return Path(data.cache_dir) if data.cache_dir else run_dir / "data" / "hf_cache"


def _documents(spec: str, split: str, data: DataConfig, run_dir: Path) -> Iterator[str]:
    from llmfs.data.builtin import iter_builtin
    from llmfs.data.sources import iter_documents

    if spec.startswith("builtin:"):
        for record in iter_builtin(spec, split=split):
            yield record["text"] if "text" in record else _builtin_text(spec, record)
        return
    def read() -> Iterator[str]:
        return iter_documents([spec], field=data.text_field, cache_dir=cache_dir(data, run_dir),
                              hint='set data.text_field = "{column}"')

    if data.valid_split == "tail":
        yield from tail_split(read, split, data.valid_fraction)
        return
    for doc in read():
        if wanted(doc, split, data.valid_fraction):
            yield doc


def tail_split(read: Callable[[], Iterator[str]], split: str, valid_fraction: float) -> Iterator[str]:
    """The documents of `read()` before (train) or after (valid) character int(n * (1 - valid_fraction)) of
    their concatenation; the document holding that character is cut there."""
    cutoff = int(sum(len(doc) for doc in read()) * (1 - valid_fraction))
    seen = 0
    for doc in read():
        start, seen = seen, seen + len(doc)
        piece = doc[:max(0, cutoff - start)] if split == "train" else doc[max(0, cutoff - start):]
        if piece:
            yield piece


def _builtin_text(spec: str, record: dict) -> str:
    raise DataError(f"{spec}: has no 'text' field to pretrain on (it holds {', '.join(record)}); "
                    "pretrain on builtin:stories or text files")


def _slug(i: int, spec: str) -> str:
    return f"{i:02d}-" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", spec).strip("_")[:40] or "source")


def prepare_tokenizer(cfg: TokenizerConfig, data: DataConfig, run_dir: Path, quiet: bool):
    """Load the recipe's tokenizer, or train one into RUN/tokenizer (reused when already there)."""
    from llmfs.tokenizer import build_tokenizer, load, save, train_bpe

    if cfg.path:
        return build_tokenizer(cfg), Path(cfg.path)
    out = run_dir / "tokenizer"
    if (out / "tokenizer.json").is_file():
        return load(out), out
    if cfg.kind == "byte":
        tok = build_tokenizer(cfg)
    else:
        def sample() -> Iterator[str]:
            budget = cfg.train_chars
            for spec in data.sources:
                share = budget // len(data.sources)
                for doc in _documents(spec, "train", data, run_dir):
                    yield doc[:share]
                    share -= len(doc)
                    if share <= 0:
                        break

        tok = train_bpe(sample(), cfg.vocab_size, special_tokens=cfg.special_tokens, pattern=cfg.pattern,
                        quiet=quiet)
    tmp = out.with_name("tokenizer.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save(tok, tmp)
    tmp.rename(out)
    return load(out), out


def prepare_shards(data: DataConfig, tokenizer, tokenizer_sha: str, run_dir: Path,
                   quiet: bool) -> tuple[list[TokenShards], list[TokenShards]]:
    """(train shards, valid shards), one per source, encoded once and cached under RUN/data."""
    from llmfs.tokenizer.shard_writer import ShardWriter

    train, valid = [], []
    for i, spec in enumerate(data.sources):
        base = run_dir / "data" / _slug(i, spec)
        for split, out in (("train", train), ("valid", valid)):
            d = base / split
            source = {"spec": spec, "split": split, "text_field": data.text_field,
                      "valid_split": data.valid_split, "valid_fraction": data.valid_fraction}
            if _cached(d, source, tokenizer_sha):
                out.append(TokenShards(d))
                continue
            shutil.rmtree(d, ignore_errors=True)
            d.parent.mkdir(parents=True, exist_ok=True)
            docs = _documents(spec, split, data, run_dir)
            with ShardWriter(d, vocab_size=tokenizer.vocab_size, eot_id=tokenizer.eot_id,
                             tokenizer_sha256=tokenizer_sha, shard_tokens=100_000_000) as w:
                batch: list[str] = []
                for doc in docs:
                    batch.append(doc)
                    if len(batch) == 256:
                        _write(w, tokenizer, batch)
                        batch = []
                _write(w, tokenizer, batch)
            (d / SOURCE_FILE).write_text(json.dumps(source), encoding="utf-8")
            shards = TokenShards(d)
            if shards.num_tokens == 0:
                fix = ("add data, or hold out the end of the text with data.valid_split = \"tail\" (a hash split "
                       "puts each whole document on one side, and a text file without <|endoftext|> lines is one "
                       "document)" if data.valid_split == "hash" else "add data or raise data.valid_fraction")
                raise DataError(f"{spec}: the {split} split holds no documents; {fix}")
            out.append(shards)
    return train, valid


def _write(writer, tokenizer, docs: list[str]) -> None:
    for ids in tokenizer.encode_batch(docs):
        writer.write(ids)
        writer.end_document()


def _cached(d: Path, source: dict, tokenizer_sha: str) -> bool:
    try:
        index = json.loads((d / INDEX_FILE).read_text(encoding="utf-8"))
        written = json.loads((d / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return index.get("tokenizer_sha256") == tokenizer_sha and written == source
