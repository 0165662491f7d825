"""The trainer: hand-computed merges, tie-break, incremental updates vs a naive recount, determinism."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings, strategies as st

from llmfs.tokenizer import learn_merges, train_bpe

A, B, C, D, E, X, Y = (ord(ch) for ch in "abcdexy")


def naive_merges(word_counts: dict[str, int], n_merges: int) -> list[tuple[int, int, int]]:
    """Reference: recount every pair from scratch before each merge; same tie-break (max count, then smallest
    (a, b)); merged bytes that already exist reuse their id."""
    vocab = [bytes([i]) for i in range(256)]
    words = Counter({tuple(w.encode("utf-8")): c for w, c in word_counts.items()})
    merges = []
    for _ in range(n_merges):
        stats: Counter = Counter()
        for w, c in words.items():
            for p in zip(w, w[1:]):
                stats[p] += c
        if not stats:
            break
        a, b = min(stats, key=lambda p: (-stats[p], p))
        merged = vocab[a] + vocab[b]
        if merged in vocab:
            z = vocab.index(merged)
        else:
            z = len(vocab)
            vocab.append(merged)
        merges.append((a, b, z))
        new: Counter = Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == (a, b):
                    out.append(z)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new[tuple(out)] += c
        words = new
    return merges


def test_hand_computed_merges_and_tie_break():
    counts = {"abab": 2, "de": 4, "bc": 3, "xy": 2, "ca": 1}
    # Hand computation (a=97 b=98 c=99 d=100 e=101 x=120 y=121):
    #   pairs: ab = 2*2 = 4, ba = 2, de = 4, bc = 3, xy = 2, ca = 1
    #   1. ab (4) ties de (4): smallest ids (97,98) < (100,101) -> ab = 256. abab -> [256,256]; ba drops to 0
    #   2. de (4)                      -> 257
    #   3. bc (3)                      -> 258
    #   4. xy (2) ties (256,256) (2): (120,121) < (256,256) -> xy = 259
    #   5. (256,256) (2)               -> 260 ("abab")
    #   6. ca (1)                      -> 261; then no pair is left, so training stops early at 6 merges
    merges, vocab = learn_merges(counts, 50)
    assert merges == [(A, B, 256), (D, E, 257), (B, C, 258), (X, Y, 259), (256, 256, 260), (C, A, 261)]
    assert vocab[256:] == [b"ab", b"de", b"bc", b"xy", b"abab", b"ca"]
    assert merges == naive_merges(counts, 50)


def test_stops_at_n_merges():
    merges, vocab = learn_merges({"abab": 2, "de": 4, "bc": 3}, 2)
    assert [m[:2] for m in merges] == [(A, B), (D, E)] and len(vocab) == 258


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(alphabet="abcé🤖 ", min_size=1, max_size=12), st.integers(1, 9), max_size=25),
       st.integers(0, 40))
def test_incremental_equals_naive_recount(counts, n):
    merges, _ = learn_merges(counts, n)
    assert merges == naive_merges(counts, n)


def test_independent_of_input_order_and_workers():
    docs = [f"doc {i}: the quick brown fox {i * 37} jumps over the lazy dog {'ab' * (i % 5)}\n" for i in range(300)]
    t1 = train_bpe(docs, 400, workers=1, quiet=True)
    t2 = train_bpe(list(reversed(docs)), 400, workers=1, quiet=True)
    t3 = train_bpe(docs, 400, workers=2, quiet=True)
    assert t1.merges == t2.merges == t3.merges
    assert t1.vocab_size == 400 and t1.special_tokens == {"<|endoftext|>": 399}


def test_special_tokens_are_never_merged_or_counted():
    docs = ["<|endoftext|>hi<|endoftext|>" * 50, "ab<|endoftext|>ab " * 50]
    tok = train_bpe(docs, 300, quiet=True)
    learned = tok.vocab[256:]
    assert not any(b"<|" in t or b"|>" in t or b"endoftext" in t for t in learned)
    # without the special token registered, its text is ordinary text and gets merged
    plain = train_bpe(docs, 300, special_tokens=(), quiet=True)
    assert any(b"endo" in t for t in plain.vocab[256:])


def test_vocab_smaller_when_corpus_runs_out_of_pairs():
    tok = train_bpe(["ab ab ab"], 1000, quiet=True)
    assert tok.merges == [(A, B, 256), (32, 256, 257)] and tok.vocab_size == 259  # 256 + 2 + <|endoftext|>


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(st.text(alphabet="ab", min_size=1, max_size=16), st.integers(1, 5), max_size=12),
       st.integers(0, 30))
def test_incremental_equals_naive_on_runs(counts, n):
    # two letters make runs such as "aaaa" and "ababab", where neighbouring occurrences share pairs
    merges, _ = learn_merges(counts, n)
    assert merges == naive_merges(counts, n)


def test_overlapping_runs_by_hand():
    # "aaa" x1: pairs aa = 2. 1. (a,a) -> 256: "aaa" -> [256, a] (left to right), pairs (256, a) = 1.
    # 2. (256, a) -> 257 ("aaa").
    merges, vocab = learn_merges({"aaa": 1}, 5)
    assert merges == [(A, A, 256), (256, A, 257)] and vocab[257] == b"aaa"


def test_streamed_chunks_count_like_the_whole_text():
    from collections import Counter

    import regex

    from llmfs.data.sources import cut
    from llmfs.tokenizer.patterns import PATTERNS
    from llmfs.tokenizer.pretokenize import count_words

    text = "".join(f"Line {i}: it's 12345 cats!\n{'  indented' if i % 3 else 'Plain'} text  \n\nEnd.\n"
                   for i in range(200))
    whole = Counter(regex.findall(PATTERNS["gpt2"], text))
    pieces = [p.text for p in cut(text, 300)]
    assert len(pieces) > 10
    for workers in (1, 2):  # tiny chunks: many tasks, results merged in any order
        assert count_words(pieces, pattern="gpt2", workers=workers, chunk_chars=500) == whole
        assert count_words([text], pattern="gpt2", workers=workers, chunk_chars=500) == whole
    assert train_bpe(iter(pieces), 400, quiet=True).merges == train_bpe([text], 400, quiet=True).merges


def test_documents_are_never_joined_into_one_pretoken():
    from llmfs.tokenizer.pretokenize import count_words

    for workers in (1, 2):
        assert count_words(["the cat", "s sat"], workers=workers) == {"the": 1, " cat": 1, "s": 1, " sat": 1}
