"""Streaming, parallel word counting: pieces of text -> {pre-token: count}.

BPE training only needs how often each distinct pre-token occurs (a corpus of millions of words has tens of
thousands of distinct ones), so the trainer never sees the text itself. Pieces from `llmfs.data.sources` are
grouped into chunks of about `chunk_chars` characters (a longer piece is re-cut at a pre-token-safe boundary;
pieces are never joined, since text across a document boundary is not one pre-token) and counted in `workers`
processes; at most `2 * workers` chunks are in flight, so memory is bounded by the chunk size and the number of
distinct words, not by the corpus.

Special tokens are cut out of the text before the split pattern runs (they are never part of a pre-token, so
never merged), as tiktoken and `tokenizers` do with their special / added tokens.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator

import regex

from llmfs.data.sources import cut
from llmfs.tokenizer.patterns import PATTERNS, special_splitter

DEFAULT_CHUNK_CHARS = 1 << 16  # 64 Ki characters per task: the pre-token list of a chunk (~1 MB) is the transient peak


def count_chunk(pattern: str, special_tokens: tuple[str, ...], texts: list[str]) -> dict[str, int]:
    """Counts of the pre-tokens of each text (special tokens removed). Texts are split one by one, never
    joined: two documents side by side could form a pre-token across their boundary ("...cat" + "s..."). Runs in
    a worker process; `regex.compile` keeps its own cache of compiled patterns, so this compiles once per
    process."""
    split = regex.compile(pattern)
    counts: Counter[str] = Counter()
    splitter = special_splitter(special_tokens)
    for text in texts:
        parts = splitter.split(text)[::2] if splitter is not None else [text]  # [::2] drops the specials
        for part in parts:
            counts.update(split.findall(part))
    return counts


def _chunks(pieces: Iterable[str], chunk_chars: int) -> Iterator[list[str]]:
    """Group pieces into chunks of about `chunk_chars` characters; a longer piece is first re-cut at
    pre-token-safe boundaries (`llmfs.data.sources.cut`)."""
    buf: list[str] = []
    size = 0
    for piece in pieces:
        for text in ([p.text for p in cut(piece, chunk_chars)] if len(piece) > chunk_chars else (piece,)):
            buf.append(text)
            size += len(text)
            if size >= chunk_chars:
                yield buf
                buf, size = [], 0
    if buf:
        yield buf


def count_words(pieces: Iterable[str], *, pattern: str = "gpt4", special_tokens: tuple[str, ...] = (),
                workers: int = 1, chunk_chars: int = DEFAULT_CHUNK_CHARS,
                on_chunk: Callable[[int], None] | None = None) -> dict[str, int]:
    """{pre-token: count} over all pieces. `pieces` must be cut at pre-token boundaries (any document boundary
    is one). `on_chunk(n_chars)` is called after each chunk is counted (progress)."""
    regex_text = PATTERNS[pattern]
    total: Counter[str] = Counter()
    chunks = _chunks(pieces, chunk_chars)
    if workers <= 1:
        for chunk in chunks:
            total.update(count_chunk(regex_text, special_tokens, chunk))
            if on_chunk:
                on_chunk(sum(map(len, chunk)))
        return dict(total)
    # fork: workers start in milliseconds and inherit the imported modules; spawn elsewhere
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers) as pool:
        pending: deque = deque()
        for chunk in chunks:
            n = sum(map(len, chunk))
            pending.append((n, pool.apply_async(count_chunk, (regex_text, special_tokens, chunk))))
            if len(pending) >= 2 * workers:  # bounded in-flight work: the input is streamed, never held
                n, result = pending.popleft()
                total.update(result.get())
                if on_chunk:
                    on_chunk(n)
        while pending:
            n, result = pending.popleft()
            total.update(result.get())
            if on_chunk:
                on_chunk(n)
    return dict(total)
