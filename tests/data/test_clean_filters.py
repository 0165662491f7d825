"""Normalisation and the Gopher quality / repetition filters, each at its threshold: the edge value is kept, one
step past it is dropped (llmfs/data/clean/normalize.py, quality.py, repetition.py)."""

from __future__ import annotations

import dataclasses

import pytest

from llmfs.data.clean.config import NormalizeConfig, QualityConfig, RepetitionConfig
from llmfs.data.clean.normalize import html_to_text, normalize
from llmfs.data.clean.quality import quality_reason, quality_stats, words
from llmfs.data.clean.repetition import (duplicate_line_fractions, duplicate_ngram_char_fraction,
                                         repetition_reason, top_ngram_char_fraction)

# Only the check under test is active: the others are opened wide.
OPEN = QualityConfig(min_words=0, min_stop_words=0, min_mean_word_length=0, max_mean_word_length=100,
                     max_symbol_word_ratio=100)
NO_REPETITION = RepetitionConfig(max_duplicate_line_fraction=1, max_duplicate_line_char_fraction=1,
                                 max_top_ngram_char_fraction=(1, 1, 1), max_duplicate_ngram_char_fraction=(1,) * 6)
STORY = ("One day a little girl named Lily found a needle in her room. She knew it was difficult to play with it "
         "because it was sharp. Lily wanted to share the needle with her mom, so she could sew a button on her "
         "shirt. She went to her mom and asked for help. Her mom smiled and said that they could fix the shirt "
         "together. They worked on it all afternoon and had a wonderful time.")


def q(text: str, **changes) -> str | None:
    return quality_reason(text, dataclasses.replace(OPEN, **changes))


def r(text: str, **changes) -> str | None:
    return repetition_reason(text, dataclasses.replace(NO_REPETITION, **changes))


def test_normalize_unicode_controls_whitespace():
    cfg = NormalizeConfig()
    assert normalize("Cafe\u0301", cfg) == "Caf\u00e9"  # NFC composes
    assert normalize("a\x00b\x07c\u200bd\ufeff", cfg) == "abcd"
    assert normalize("  one \t\u00a0 two  \r\n\r\n\r\n\r\nthree\rfour  ", cfg) == "one two\n\nthree\nfour"
    assert normalize("  keep   me  ", NormalizeConfig(enabled=False)) == "  keep   me  "
    assert normalize("x\u00a0 y", dataclasses.replace(cfg, whitespace=False)) == "x\u00a0 y"
    assert normalize("\ufb01", dataclasses.replace(cfg, unicode="NFKC")) == "fi"


def test_html_to_text_keeps_visible_text_only():
    page = ("<html><head><title>T</title><style>p {color: red}</style></head><body><script>var x = 1;</script>"
            "<h1>Title</h1><p>Fish &amp; chips &#233;t&eacute;</p><ul><li>one</li><li>two</li></ul></body></html>")
    text = normalize(page, NormalizeConfig(), html=True)
    assert text == "Title\n\nFish & chips \u00e9t\u00e9\n\none\n\ntwo"
    assert "var x" not in html_to_text(page) and "color" not in html_to_text(page)
    assert normalize(page, NormalizeConfig(html=False), html=True).startswith("<html>")


def test_a_real_story_passes_every_default_filter():
    assert quality_reason(STORY, QualityConfig()) is None
    assert repetition_reason(STORY, RepetitionConfig()) is None


def test_words_strip_punctuation():
    assert words('"Hello," she said -- ... ok.') == ["Hello", "she", "said", "ok"]


def test_word_count_bounds():
    fifty = " ".join(["the", "house", "with", "green", "doors"] * 10)
    assert quality_reason(fifty, QualityConfig()) is None  # exactly min_words = 50 (Gopher)
    assert quality_reason(fifty.rsplit(" ", 1)[0], QualityConfig()) == "too_few_words"
    assert q(fifty, max_words=50) is None and q(fifty + " end", max_words=50) == "too_many_words"


def test_mean_word_length_bounds():
    assert q("the and", min_mean_word_length=3) is None  # mean 3.0
    assert q("the an", min_mean_word_length=3) == "mean_word_length"  # mean 2.5
    assert q("abcdefghij", max_mean_word_length=10) is None
    assert q("abcdefghijk", max_mean_word_length=10) == "mean_word_length"


def test_symbol_to_word_ratio():
    ten = "one two three four five six seven eight nine ten"
    assert q(ten + " #", max_symbol_word_ratio=0.1) is None  # 1 / 10 ("#" alone is not a word)
    assert q(ten + " # #", max_symbol_word_ratio=0.1) == "symbol_word_ratio"
    assert q("one... " + ten[4:], max_symbol_word_ratio=0.1) is None
    assert q("one... and\u2026 " + ten[4:], max_symbol_word_ratio=0.1) == "symbol_word_ratio"  # 2 / 11


def test_bullet_lines():
    lines = [f"- item number {c}" for c in "abcdefghi"] + ["plain line"]
    assert q("\n".join(lines)) is None  # 9 / 10 = 0.9
    assert q("\n".join(lines[:9] + ["\u2022 bullet too"])) == "bullet_lines"


def test_ellipsis_lines():
    lines = [f"line {i} goes on and on" + ("..." if i < 3 else ".") for i in range(10)]
    assert q("\n".join(lines)) is None  # 3 / 10 = 0.3
    lines[3] = "line 3 trails off\u2026"
    assert q("\n".join(lines)) == "ellipsis_lines"


def test_alphabetic_words():
    assert q("a b c d e f g h 1 2") is None  # 8 / 10 = 0.8
    assert q("a b c d e f g 1 2 3") == "alpha_words"
    assert quality_stats("x1 22").alpha_word_fraction == 0.5
    assert quality_stats("x1 22 \u00e9 \u4e16\u754c \u0663").alpha_word_fraction == 0.6  # any script; \u0663 is a digit


def test_stop_words():
    assert q("the dog with a bone", min_stop_words=2) is None
    assert q("the dog has a bone", min_stop_words=2) == "stop_words"


def test_duplicate_lines():
    lines = [f"line {i}" for i in range(7)] + ["line 0", "line 1", "line 2"]
    assert duplicate_line_fractions("\n".join(lines))[0] == 0.3
    assert r("\n".join(lines), max_duplicate_line_fraction=0.3) is None
    assert r("\n".join(lines[:6] + ["line 0"] + lines[7:]), max_duplicate_line_fraction=0.3) == "duplicate_lines"


def test_duplicate_line_chars():
    unique = ["aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc", "dddddddddd"]
    text = "\n".join(unique + ["aaaaaaaaaa"])  # 10 of 50 characters repeat
    assert duplicate_line_fractions(text) == (0.2, 0.2)
    assert r(text, max_duplicate_line_char_fraction=0.2) is None
    text = "\n".join(unique[:3] + ["aaaaaaaaaa", "bbbbbbbbbb"])  # 20 / 50
    assert r(text, max_duplicate_line_char_fraction=0.2) == "duplicate_line_chars"


def test_top_ngram_char_fraction():
    fillers = ["ffff", "gggg", "hhhh", "iiii", "jjjj", "kkkk", "llll", "mmmm"]
    ws = ["ab", "cd", "ab", "cd"] + fillers  # "ab cd" twice: 8 of 40 word characters
    assert top_ngram_char_fraction(ws, 2) == 0.2
    assert r(" ".join(ws), max_top_ngram_char_fraction=(0.2, 1, 1)) is None
    ws = ["ab", "cd", "ab", "cd"] + fillers[:7] + ["nnn"]  # 8 / 39
    assert r(" ".join(ws), max_top_ngram_char_fraction=(0.2, 1, 1)) == "top_2gram"
    assert top_ngram_char_fraction(["a", "b", "c"], 2) == 0.0  # no n-gram repeats
    three = " ".join(["xx", "yy", "zz"] * 2 + fillers)  # "xx yy zz" twice: 12 of 44
    assert r(three, max_top_ngram_char_fraction=(1, 0.25, 1)) == "top_3gram"


def test_duplicate_ngram_char_fraction():
    gram = ["aaa", "bbb", "ccc", "ddd", "eee"]
    fillers = [c * 10 for c in "fghijkl"]
    ws = gram + gram + fillers  # the second 5-gram: 15 of 100 word characters
    assert duplicate_ngram_char_fraction(ws, 5) == 0.15
    assert r(" ".join(ws), max_duplicate_ngram_char_fraction=(0.15, 1, 1, 1, 1, 1)) is None
    ws = gram + gram + fillers[:6] + ["m" * 9]  # 15 / 99
    assert r(" ".join(ws), max_duplicate_ngram_char_fraction=(0.15, 1, 1, 1, 1, 1)) == "duplicate_5gram"
    ten = [f"w{i}" for i in range(10)]
    assert r(" ".join(ten * 2), max_duplicate_ngram_char_fraction=(1, 1, 1, 1, 1, 0.1)) == "duplicate_10gram"
    assert duplicate_ngram_char_fraction(["a", "b", "a", "b", "a", "b"], 2) == pytest.approx(4 / 6)
