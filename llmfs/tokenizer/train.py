"""The functions behind `llmfs tokenize train-bpe | encode | stats` (cli.py only parses arguments).

Each takes plain arguments, raises LlmfsError for user mistakes and returns a small dict summary that the CLI
prints (and tests check). `field` is the text column of .jsonl / .parquet inputs and hub datasets, `cache_dir`
the `datasets` cache (None: llmfs.data.tables.DEFAULT_CACHE_DIR, ./.llmfs_cache/datasets).
"""

from __future__ import annotations

import multiprocessing
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

from llmfs.errors import ConfigError, DataError

DEFAULT_SHARD_TOKENS = 100_000_000  # 200 MB per uint16 shard
BATCH_CHARS = 1 << 20  # characters per encode task
FIELD_HINT = "--field {column}"  # the fix a missing text column's error shows


def train_bpe_files(inputs: Sequence[str | Path], vocab_size: int, out: str | Path, *,
                    special_tokens: Sequence[str] = ("<|endoftext|>",), pattern: str = "gpt4", workers: int = 1,
                    quiet: bool = False, field: str = "text", cache_dir: str | Path | None = None) -> dict:
    """Train a BPE on the inputs (files, folders, .jsonl/.parquet, hub names; see llmfs.data.sources) and
    write tokenizer.json + vocab.json + merges.txt into `out`. Returns {out, vocab_size, merges, sha256,
    seconds}."""
    from llmfs.data.sources import iter_pieces
    from llmfs.tokenizer.bpe import train_bpe
    from llmfs.tokenizer.hf import save

    if workers < 1:
        raise ConfigError(f"--workers {workers}: must be >= 1")
    separator = "<|endoftext|>"  # TinyStories-style document separator lines in text files
    t0 = time.perf_counter()
    pieces = (p.text for p in iter_pieces(inputs, separator=separator, field=field, cache_dir=cache_dir,
                                          hint=FIELD_HINT))
    tok = train_bpe(pieces, vocab_size, special_tokens=special_tokens, pattern=pattern, workers=workers,
                    quiet=quiet)
    sha = save(tok, out)
    return {"out": str(out), "vocab_size": tok.vocab_size, "merges": len(tok.merges), "sha256": sha,
            "seconds": time.perf_counter() - t0, "requested_vocab_size": vocab_size}


def _batches(inputs: Sequence[str | Path], batch_chars: int, field: str = "text",
             cache_dir: str | Path | None = None) -> Iterator[list[tuple[str, bool]]]:
    from llmfs.data.sources import iter_pieces

    batch: list[tuple[str, bool]] = []
    size = 0
    for piece in iter_pieces(inputs, field=field, cache_dir=cache_dir, hint=FIELD_HINT):
        batch.append((piece.text, piece.end))
        size += len(piece.text)
        if size >= batch_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def encode_batch_task(tok, batch: list[tuple[str, bool]]) -> list[list[int]]:
    """Ids of each piece of a batch (runs in a worker process; the tokenizer arrives without its caches).
    Uses llmfs's own encoder: with its pre-token cache it measured 2-3x faster than the `tokenizers` bulk path
    on the 2-core machine this was built on (docs/bench/tokenizer.md); both give identical ids."""
    return [tok.encode(text) for text, _ in batch]


def encode_files(tokenizer: str | Path, inputs: Sequence[str | Path], out: str | Path, *, workers: int = 1,
                 shard_tokens: int = DEFAULT_SHARD_TOKENS, quiet: bool = False, field: str = "text",
                 cache_dir: str | Path | None = None) -> dict:
    """Encode the inputs into token shards in `out` (see shard_writer.py): each document's ids followed by the
    end-of-text id. Special tokens spelled in the text are encoded as text. Returns the index dict."""
    from llmfs.tokenizer.hf import load, sha256
    from llmfs.tokenizer.progress import Progress
    from llmfs.tokenizer.shard_writer import ShardWriter

    if workers < 1:
        raise ConfigError(f"--workers {workers}: must be >= 1")
    if shard_tokens < 1:
        raise ConfigError(f"--shard-tokens {shard_tokens}: must be >= 1")
    tok = load(tokenizer)
    if tok.eot_id is None:
        raise DataError(f"{tokenizer}: tokenizer has no special token to end documents with; "
                        "train it with --special-tokens '<|endoftext|>'")
    writer = ShardWriter(out, vocab_size=tok.vocab_size, eot_id=tok.eot_id, tokenizer_sha256=sha256(tokenizer),
                         shard_tokens=shard_tokens)
    with writer, Progress(quiet) as progress:
        task = progress.add("encoding", total=None, unit="chars")

        def consume(batch, results) -> None:
            for (text, end), ids in zip(batch, results):
                writer.write(ids)
                if end:
                    writer.end_document()
            progress.advance(task, sum(len(t) for t, _ in batch))

        if workers == 1:
            for batch in _batches(inputs, BATCH_CHARS, field, cache_dir):
                consume(batch, encode_batch_task(tok, batch))
        else:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            with multiprocessing.get_context(method).Pool(workers) as pool:
                pending: deque = deque()  # in input order: shards keep the documents' order
                for batch in _batches(inputs, BATCH_CHARS, field, cache_dir):
                    pending.append((batch, pool.apply_async(encode_batch_task, (tok, batch))))
                    if len(pending) >= 2 * workers:
                        b, r = pending.popleft()
                        consume(b, r.get())
                while pending:
                    b, r = pending.popleft()
                    consume(b, r.get())
        progress.done(task)
    from llmfs.tokenizer.shard_writer import read_index
    return read_index(out)


def stats(tokenizer: str | Path, inputs: Sequence[str | Path], *, top: int = 10,
          max_chars: int | None = None, field: str = "text", cache_dir: str | Path | None = None) -> dict:
    """Bytes per token, vocabulary use (fraction of ids seen) and the longest tokens, over the inputs (the first
    `max_chars` characters when given)."""
    import numpy as np

    from llmfs.tokenizer.hf import load

    tok = load(tokenizer)
    seen = np.zeros(tok.vocab_size, dtype=np.int64)
    n_bytes = n_tokens = chars = 0
    for batch in _batches(inputs, BATCH_CHARS, field, cache_dir):
        texts = [t for t, _ in batch]
        if max_chars is not None:
            texts = _clip(texts, max_chars - chars)
        for text, ids in zip(texts, encode_batch_task(tok, [(t, False) for t in texts])):
            n_bytes += len(text.encode("utf-8"))
            n_tokens += len(ids)
            seen += np.bincount(np.asarray(ids, dtype=np.int64), minlength=tok.vocab_size)
            chars += len(text)
        if max_chars is not None and chars >= max_chars:
            break
    if n_tokens == 0:
        raise DataError(f"{', '.join(map(str, inputs))}: no text to measure")
    longest = sorted(range(len(tok.vocab)), key=lambda i: (-len(tok.vocab[i]), i))[:top]
    return {"bytes": n_bytes, "tokens": n_tokens, "bytes_per_token": n_bytes / n_tokens,
            "vocab_size": tok.vocab_size, "ids_seen": int((seen > 0).sum()),
            "vocab_use": float((seen > 0).sum()) / tok.vocab_size,
            "longest_tokens": [(i, tok.vocab[i].decode("utf-8", errors="replace"), len(tok.vocab[i]))
                               for i in longest]}


def _clip(texts: list[str], budget: int) -> list[str]:
    out = []
    for t in texts:
        if budget <= 0:
            break
        out.append(t[:budget])
        budget -= len(t)
    return out
