"""The `[clean]` recipe section of `llmfs data clean`: one frozen dataclass per step, each switchable.

    [clean]
    split = "document"          # what one document is (inputs.py)
    [clean.quality]
    min_words = 50
    [clean.dedup]
    threshold = 0.7

Defaults follow Gopher (Rae et al. 2021, "Scaling Language Models", appendix A.1.1) for the quality and
repetition filters, and common MinHash-LSH practice (5-word shingles, 128 permutations in 16 bands of 8) for
near-duplicates. A recipe file holds only `[clean]`; `load_clean_recipe(None, overrides)` gives the defaults.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal, Sequence

from llmfs.config import apply_overrides, from_dict, invalid, option, read_toml

# pii.PATTERNS keys, in the order they are applied (tests/data/test_clean_pii.py keeps the three in sync)
PII_TYPES = ("private_key", "secret", "email", "credit_card", "ipv6", "ipv4", "phone")
PiiType = Literal["private_key", "secret", "email", "credit_card", "ipv6", "ipv4", "phone"]


@dataclasses.dataclass(frozen=True)
class NormalizeConfig:
    enabled: bool = True
    unicode: Literal["NFC", "NFKC", "none"] = "NFC"
    control_chars: bool = True  # drop C0/C1 control characters except tab and newline; CRLF / CR -> LF
    whitespace: bool = True     # runs of spaces/tabs -> one space, lines stripped, 3+ newlines -> one blank line
    html: bool = True           # .html / .htm inputs: markup -> text (script, style and head dropped)


@dataclasses.dataclass(frozen=True)
class QualityConfig:
    """Gopher quality filters. A document is dropped when a value is *outside* [min, max]; the edge is kept."""

    enabled: bool = True
    min_words: int = option(50, ge=0)
    max_words: int = option(100_000, ge=1)
    min_mean_word_length: float = option(3.0, ge=0)
    max_mean_word_length: float = option(10.0, gt=0)
    max_symbol_word_ratio: float = option(0.1, ge=0, doc="('#' + '...' + '…') / words")
    max_bullet_line_fraction: float = option(0.9, ge=0, le=1)
    max_ellipsis_line_fraction: float = option(0.3, ge=0, le=1)
    min_alpha_word_fraction: float = option(0.8, ge=0, le=1, doc="words holding an alphabetic character")
    min_stop_words: int = option(2, ge=0, doc="distinct English stop words (the, be, to, of, and, that, have, "
                                              "with); 0 turns the check off for other languages")

    def validate(self) -> None:
        if self.min_words > self.max_words:
            raise invalid("min_words", f"must be <= max_words ({self.max_words}), got {self.min_words}")
        if self.min_mean_word_length > self.max_mean_word_length:
            raise invalid("min_mean_word_length", f"must be <= max_mean_word_length ({self.max_mean_word_length})")


@dataclasses.dataclass(frozen=True)
class RepetitionConfig:
    """Gopher repetition filters (fractions above the threshold drop the document)."""

    enabled: bool = True
    max_duplicate_line_fraction: float = option(0.30, ge=0, le=1)
    max_duplicate_line_char_fraction: float = option(0.20, ge=0, le=1)
    max_top_ngram_char_fraction: tuple[float, float, float] = option((0.20, 0.18, 0.16), ge=0, le=1,
                                                                     doc="n = 2, 3, 4")
    max_duplicate_ngram_char_fraction: tuple[float, float, float, float, float, float] = option(
        (0.15, 0.14, 0.13, 0.12, 0.11, 0.10), ge=0, le=1, doc="n = 5 .. 10")


@dataclasses.dataclass(frozen=True)
class DedupConfig:
    exact: bool = True
    near: bool = True
    shingle_size: int = option(5, ge=1, doc="words per shingle")
    num_perm: int = option(128, ge=2, doc="MinHash permutations")
    bands: int = option(16, ge=1, doc="LSH bands; num_perm / bands rows each")
    threshold: float = option(0.7, gt=0, le=1, doc="estimated Jaccard at or above which a candidate is a dup")
    seed: int = option(0, ge=0)

    def validate(self) -> None:
        if self.num_perm % self.bands:
            raise invalid("bands", f"must divide num_perm ({self.num_perm}), got {self.bands}")


@dataclasses.dataclass(frozen=True)
class PiiConfig:
    enabled: bool = True
    types: tuple[PiiType, ...] = PII_TYPES


@dataclasses.dataclass(frozen=True)
class CleanConfig:
    split: Literal["document", "paragraph", "line"] = "document"
    min_chars: int = option(1, ge=0, doc="shorter normalised documents are dropped as 'empty'")
    checkpoint_every: int = option(10_000, ge=1, doc="documents between resume checkpoints")
    examples: int = option(3, ge=0, doc="examples kept per drop reason in report.json")
    write_dropped: bool = True  # dropped.jsonl: every dropped document with its reason
    normalize: NormalizeConfig = NormalizeConfig()
    quality: QualityConfig = QualityConfig()
    repetition: RepetitionConfig = RepetitionConfig()
    dedup: DedupConfig = DedupConfig()
    pii: PiiConfig = PiiConfig()


@dataclasses.dataclass(frozen=True)
class CleanRecipe:
    # default_factory, not a default instance: config.py merges a partial table into a default *instance*
    # one level deep only, and [clean] nests further tables
    clean: CleanConfig = dataclasses.field(default_factory=CleanConfig)


def load_clean_recipe(path: str | Path | None, overrides: Sequence[str] = ()) -> CleanConfig:
    """The [clean] section of `path` (or the defaults when None) with `--set clean.x.y=v` overrides applied."""
    data = read_toml(path) if path is not None else {}
    raw = apply_overrides(data, overrides)
    return from_dict(CleanRecipe, data, source=str(path) if path is not None else "<defaults>",
                     overrides=raw).clean
