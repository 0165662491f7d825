"""Byte-level BPE training, from scratch (Sennrich et al. 2016, on bytes as in GPT-2).

    pieces --count_words--> {pre-token: count} --learn_merges--> merges --> BPETokenizer

Each distinct pre-token ("word") is a list of token ids, starting as its UTF-8 bytes (ids 0..255). A merge
replaces every adjacent pair (a, b) by a new id z whose bytes are bytes(a) + bytes(b). Training repeats "merge the
most frequent pair" until the vocabulary is full.

Incremental updates (no recount per merge):
- `stats[(a, b)]`  how often the pair occurs, summed over words weighted by word count;
- `where[(a, b)]`  a list of the indices of words that contain (or once contained) the pair; entries are never
                   removed, and a word that no longer holds the pair (or is listed twice) is skipped when the
                   pair is merged (lists, not sets: a third of the memory, and appends are cheaper);
- a heap of (-count, (a, b)) entries with lazy invalidation: counts of old pairs only go down after a merge and
  new pairs (they contain z) are pushed with their exact count, so every live pair has an entry whose stored
  count is >= its true count. A popped entry whose count is stale is pushed back with the true count.
A merge touches only the words in `where[(a, b)]`, and in each only the pairs next to an occurrence change:
(x, a) -> (x, z) and (b, y) -> (z, y), with care for runs such as "a b a b" (the shared (b, a) is removed once,
(z, z) added once). A pair whose count reaches 0 is dropped from `stats` and `where`; the heap is rebuilt from
`stats` when stale entries outnumber live ones, so memory follows the live pairs, not the number of merges.

Tie-break (deterministic, independent of input order and hash seeds): among pairs with the same count, the
pair with the smallest (a, b), compared as ids, wins — bytes before merged tokens, older merged tokens before
newer ones. This is the rule `tokenizers`' BpeTrainer applies to its own ids (its ids differ from these, so the
two can still pick different pairs on a tie); minbpe and tiktoken's educational trainer take the first pair in
dict insertion order instead, Stanford CS336 the pair with the lexicographically largest bytes.

If the merged bytes already exist as a token (two merge paths can spell the same bytes), the merge maps to the
existing id, as in `tokenizers`, so token bytes stay unique and the vocabulary stays exportable.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable

from llmfs.tokenizer.encoder import BPETokenizer, utf8


def learn_merges(word_counts: dict[str, int], n_merges: int,
                 on_merge: Callable[[int], None] | None = None) -> tuple[list[tuple[int, int, int]], list[bytes]]:
    """Learn up to `n_merges` merges from {pre-token: count}. Returns (merges as (a, b, new_id) in rank order,
    vocab as id -> bytes for ids 0..). Stops early when no pair is left (a corpus too small for the vocab).
    `on_merge(k)` is called with the number of merges done so far, every 64 merges and at the end."""
    vocab: list[bytes] = [bytes([i]) for i in range(256)]
    id_of: dict[bytes, int] = {b: i for i, b in enumerate(vocab)}
    # Sorted words: word indices (and so the order of work) do not depend on the input order; the merges
    # themselves depend only on counts and the tie-break.
    items = sorted(word_counts.items())
    words: list[list[int]] = [list(utf8(w)) for w, _ in items]
    freqs: list[int] = [c for _, c in items]
    del items  # ~1 MB per 15k words; the merge loop below is the memory peak

    stats: dict[tuple[int, int], int] = {}
    where: dict[tuple[int, int], list[int]] = {}
    for i, w in enumerate(words):
        c = freqs[i]
        for p in zip(w, w[1:]):
            stats[p] = stats.get(p, 0) + c
            lst = where.get(p)
            if lst is None:
                where[p] = [i]
            elif lst[-1] != i:  # a word is listed once per pair even if it holds the pair twice
                lst.append(i)
    heap = [(-c, p) for p, c in stats.items()]
    heapq.heapify(heap)

    merges: list[tuple[int, int, int]] = []
    while len(merges) < n_merges:
        # ---- pop the best live pair (lazy invalidation)
        pair = None
        while heap:
            negc, p = heapq.heappop(heap)
            c = stats.get(p, 0)
            if c == -negc:
                pair = p
                break
            if c > 0:
                heapq.heappush(heap, (-c, p))
        if pair is None:
            break  # no pair left: every word is a single token
        a, b = pair
        merged = vocab[a] + vocab[b]
        z = id_of.get(merged)
        if z is None:
            z = len(vocab)
            vocab.append(merged)
            id_of[merged] = z
        merges.append((a, b, z))

        # ---- apply it to the words that hold the pair, updating stats incrementally
        touched: set[tuple[int, int]] = set()

        def dec(p: tuple[int, int], c: int) -> None:
            left = stats[p] - c
            if left:
                stats[p] = left
            else:  # the pair is gone from every word: forget it (its heap entries die on pop)
                del stats[p]
                where.pop(p, None)

        def inc(p: tuple[int, int], c: int, i: int) -> None:
            stats[p] = stats.get(p, 0) + c
            lst = where.get(p)
            if lst is None:
                where[p] = [i]
            elif lst[-1] != i:
                lst.append(i)
            touched.add(p)

        for i in where.pop(pair):
            w = words[i]
            n = len(w)
            c = freqs[i]
            new: list[int] = []
            j = 0
            merged_before = False  # new[-1] is a z made at the previous position
            while j < n:
                if j < n - 1 and w[j] == a and w[j + 1] == b:
                    # Only the pairs around this occurrence change: (x, a) -> (x, z) and (b, y) -> (z, y).
                    if new:
                        x = new[-1]
                        if not merged_before:  # else (b, a) was already removed as the previous right pair
                            dec((x, a), c)
                        inc((x, z), c, i)
                    if j + 2 < n:
                        y = w[j + 2]
                        dec((b, y), c)
                        if not (y == a and j + 3 < n and w[j + 3] == b):  # else the next match adds (z, z)
                            inc((z, y), c, i)
                    new.append(z)
                    j += 2
                    merged_before = True
                else:
                    new.append(w[j])
                    j += 1
                    merged_before = False
            if len(new) != n:  # else a stale index entry: an earlier merge consumed this occurrence
                words[i] = new
        stats.pop(pair, None)  # its own count was never decremented above
        for p in touched:
            c = stats.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, p))
        if len(heap) > 2 * len(stats) + 4096:  # mostly stale entries: rebuild, O(live pairs)
            heap = [(-c, p) for p, c in stats.items()]
            heapq.heapify(heap)
        if on_merge is not None and len(merges) % 64 == 0:
            on_merge(len(merges))
    if on_merge is not None:
        on_merge(len(merges))
    return merges, vocab


def train_bpe(pieces: Iterable[str], vocab_size: int, *, special_tokens: Iterable[str] = ("<|endoftext|>",),
              pattern: str = "gpt4", workers: int = 1, quiet: bool = False) -> BPETokenizer:
    """Train a byte-level BPE tokenizer on an iterable of text pieces (documents, or pieces of documents cut at
    pre-token boundaries; see `llmfs.data.sources.iter_pieces`).

    `vocab_size` counts everything: 256 byte tokens + merges + special tokens (the specials take the last ids,
    as `<|endoftext|>` = 50256 in GPT-2). Fewer merges are learned when the corpus runs out of pairs. Shows a
    rich progress bar on a terminal unless `quiet`. Raises ConfigError for a bad vocab size, pattern or special
    token list, DataError when the input holds no text."""
    from llmfs.errors import DataError
    from llmfs.tokenizer.pretokenize import count_words
    from llmfs.tokenizer.progress import Progress
    from llmfs.tokenizer.patterns import check_pattern
    from llmfs.tokenizer.specials import check_specials

    if isinstance(pieces, (str, bytes)):
        raise TypeError("train_bpe takes an iterable of texts (e.g. [text]), not a single string")
    specials = check_specials(tuple(special_tokens))
    check_pattern(pattern)
    n_merges = vocab_size - 256 - len(specials)
    if n_merges < 0:
        from llmfs.errors import ConfigError
        raise ConfigError(f"vocab_size {vocab_size} is below 256 byte tokens + {len(specials)} special tokens "
                          f"= {256 + len(specials)}; use --vocab-size {256 + len(specials)} or more")
    with Progress(quiet) as progress:
        task = progress.add("pre-tokenizing", total=None, unit="chars")
        counts = count_words(pieces, pattern=pattern, special_tokens=specials, workers=workers,
                             on_chunk=lambda n: progress.advance(task, n))
        progress.done(task)
        if not counts:
            raise DataError("training input holds no text outside special tokens; give a non-empty corpus")
        task = progress.add("merging", total=n_merges, unit="merges")
        merges, vocab = learn_merges(counts, n_merges, on_merge=lambda k: progress.update(task, k))
        progress.done(task)
    return BPETokenizer(vocab, merges, specials, pattern)
