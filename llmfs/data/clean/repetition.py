"""Gopher repetition filters (Rae et al. 2021, appendix A.1.1, "Repetition removal", table A1).

Measures, each a fraction in [0, 1]; a document whose fraction is *above* its threshold is dropped:
- duplicate lines: the share of non-empty lines that repeat an earlier line, and the share of characters in
  those repeats (over all characters of the non-empty lines);
- top n-gram (n = 2, 3, 4): characters covered by the most frequent word n-gram, counted at every occurrence,
  over all word characters;
- duplicate n-grams (n = 5 .. 10): characters of the words covered by any n-gram that occurs more than once
  (every occurrence after the first; a word covered twice counts once), over all word characters.
Characters of the n-gram measures are the characters of words (`quality.words`), so whitespace and punctuation
between words do not count; the paper leaves this open, and datatrove's implementation counts joined strings.
A top n-gram that occurs only once is not a repetition and scores 0.
"""

from __future__ import annotations

from collections import Counter

from llmfs.data.clean.config import RepetitionConfig
from llmfs.data.clean.quality import words


def duplicate_line_fractions(text: str) -> tuple[float, float]:
    """(share of lines that repeat an earlier line, share of characters in those lines)."""
    lines = [line.strip() for line in text.split("\n")]
    lines = [line for line in lines if line]
    if not lines:
        return 0.0, 0.0
    seen: set[str] = set()
    dup_lines = dup_chars = 0
    for line in lines:
        if line in seen:
            dup_lines += 1
            dup_chars += len(line)
        seen.add(line)
    return dup_lines / len(lines), dup_chars / sum(map(len, lines))


def _ngrams(ws: list[str], n: int):
    """The word n-grams of `ws` as tuples (zip of shifted slices: no Python-level slicing per n-gram)."""
    return zip(*(ws[k:] for k in range(n)))


def top_ngram_char_fraction(ws: list[str], n: int) -> float:
    total = sum(map(len, ws))
    if len(ws) < n or not total:
        return 0.0
    counts = Counter(_ngrams(ws, n))
    gram, count = counts.most_common(1)[0]
    return 0.0 if count < 2 else count * sum(map(len, gram)) / total


def duplicate_ngram_char_fraction(ws: list[str], n: int) -> float:
    total = sum(map(len, ws))
    if len(ws) < n or not total:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    covered = [False] * len(ws)
    for i, gram in enumerate(_ngrams(ws, n)):
        if gram in seen:
            covered[i:i + n] = [True] * n
        seen.add(gram)
    return sum(len(w) for w, c in zip(ws, covered) if c) / total


def repetition_reason(text: str, cfg: RepetitionConfig, ws: list[str] | None = None) -> str | None:
    """The name of the first repetition check `text` fails, or None; `ws` is `words(text)` if known."""
    if not cfg.enabled:
        return None
    line_frac, line_char_frac = duplicate_line_fractions(text)
    if line_frac > cfg.max_duplicate_line_fraction:
        return "duplicate_lines"
    if line_char_frac > cfg.max_duplicate_line_char_fraction:
        return "duplicate_line_chars"
    ws = words(text) if ws is None else ws  # case kept, as in the paper
    for n, limit in zip((2, 3, 4), cfg.max_top_ngram_char_fraction):
        if top_ngram_char_fraction(ws, n) > limit:
            return f"top_{n}gram"
    limits = cfg.max_duplicate_ngram_char_fraction
    for i, (n, limit) in enumerate(zip(range(5, 11), limits)):
        fraction = duplicate_ngram_char_fraction(ws, n)
        if fraction > limit:
            return f"duplicate_{n}gram"
        # The words covered by duplicated (n+1)-grams are a subset of those covered by duplicated n-grams, so the
        # fraction never grows with n: once it is within every remaining limit, no larger n can fail.
        if fraction <= min(limits[i:]):
            break
    return None
