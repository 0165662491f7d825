"""Gopher quality filters (Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights from Training
Gopher", appendix A.1.1, "Quality filtering"), the heuristic family C4 (Raffel et al. 2020) started.

A document is kept when every measure lies inside its bounds (values *at* a bound are kept) and dropped with the
name of the first failing check, in the order of `quality_reason`. Definitions used here:
- words: whitespace-separated tokens with surrounding punctuation stripped; a token of punctuation only ("-",
  "...") is not a word. The paper counts words the same way but does not say how punctuation is treated;
- symbol-to-word ratio: occurrences of "#" plus of the ellipsis ("..." or "…"), divided by the word count;
- bullet lines: non-empty lines whose first non-space character is a bullet (•●○■□▪▫‣⁃-*·);
- ellipsis lines: non-empty lines ending in "..." or "…";
- alphabetic words: words with at least one alphabetic character (any script: str.isalpha);
- stop words: at least `min_stop_words` of the, be, to, of, and, that, have, with (English only; 0 = off).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from llmfs.data.clean.config import QualityConfig

_PUNCT = "".join(chr(c) for c in range(0x21, 0x7f) if not chr(c).isalnum()) + "…“”‘’«»—–¡¿"
_BULLETS = ("•", "●", "○", "■", "□", "▪", "▫", "‣", "⁃", "-", "*", "·")
_ELLIPSIS = ("...", "…")
_STOP_WORDS = frozenset(("the", "be", "to", "of", "and", "that", "have", "with"))
_ELLIPSIS_RE = re.compile(r"\.\.\.|…")
_NO_ALPHA_LINE = re.compile(r"^(?:[^\w\n]|[\d_])+$", re.M)  # a line without a letter of any script (str.isalpha)


def words(text: str) -> list[str]:
    """Whitespace tokens with their surrounding punctuation stripped; punctuation-only tokens dropped."""
    return [w for w in (t.strip(_PUNCT) for t in text.split()) if w]


class QualityStats(NamedTuple):
    n_words: int
    mean_word_length: float
    symbol_word_ratio: float
    bullet_line_fraction: float
    ellipsis_line_fraction: float
    alpha_word_fraction: float
    stop_words: int


def quality_stats(text: str, ws: list[str] | None = None) -> QualityStats:
    """The measures of `text`; `ws` is `words(text)` when the caller has it already."""
    ws = words(text) if ws is None else ws
    n = len(ws)
    lines = [line.strip() for line in text.split("\n")]
    lines = [line for line in lines if line]
    n_lines = max(len(lines), 1)
    symbols = text.count("#") + len(_ELLIPSIS_RE.findall(text))
    return QualityStats(
        n_words=n,
        mean_word_length=sum(map(len, ws)) / n if n else 0.0,
        symbol_word_ratio=symbols / n if n else float(symbols > 0),
        bullet_line_fraction=sum(line.startswith(_BULLETS) for line in lines) / n_lines,
        ellipsis_line_fraction=sum(line.endswith(_ELLIPSIS) for line in lines) / n_lines,
        alpha_word_fraction=(n - len(_NO_ALPHA_LINE.findall("\n".join(ws)))) / n if n else 0.0,
        stop_words=len(_STOP_WORDS.intersection(w.lower() for w in ws)),
    )


def quality_reason(text: str, cfg: QualityConfig, ws: list[str] | None = None) -> str | None:
    """The name of the first check `text` fails, or None when it passes them all (or the step is off)."""
    if not cfg.enabled:
        return None
    s = quality_stats(text, ws)
    if s.n_words < cfg.min_words:
        return "too_few_words"
    if s.n_words > cfg.max_words:
        return "too_many_words"
    if not cfg.min_mean_word_length <= s.mean_word_length <= cfg.max_mean_word_length:
        return "mean_word_length"
    if s.symbol_word_ratio > cfg.max_symbol_word_ratio:
        return "symbol_word_ratio"
    if s.bullet_line_fraction > cfg.max_bullet_line_fraction:
        return "bullet_lines"
    if s.ellipsis_line_fraction > cfg.max_ellipsis_line_fraction:
        return "ellipsis_lines"
    if s.alpha_word_fraction < cfg.min_alpha_word_fraction:
        return "alpha_words"
    if s.stop_words < cfg.min_stop_words:
        return "stop_words"
    return None
