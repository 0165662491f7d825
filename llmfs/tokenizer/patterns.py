"""Pre-tokenizer split patterns, chosen by name.

A byte-level BPE never merges across a pre-token boundary: the text is first cut into pre-tokens (words with
their leading space, runs of digits, punctuation, whitespace) by one regular expression, and merges are learned
and applied inside each pre-token. The patterns are the published ones, used with the `regex` module (which
supports `\\p{L}` classes and possessive quantifiers) here and with Oniguruma inside `tokenizers`:

- "gpt2": GPT-2's pattern (openai/gpt-2 `encoder.py`). Contractions are case-sensitive; digits run unbounded.
- "gpt4": tiktoken's `cl100k_base` pattern (GPT-4). Case-insensitive contractions, digits in groups of at most
  three, punctuation keeps its trailing newlines, a letter run may take one leading non-letter character.

Both patterns match every character of any string (the last alternative `\\s+` and the catch-all classes cover
the rest), so the pre-tokens of a text concatenate back to the text.
"""

from __future__ import annotations

from typing import Literal

import regex

PatternName = Literal["gpt2", "gpt4"]

PATTERNS: dict[str, str] = {
    "gpt2": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    "gpt4": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+""",
}


def compile_pattern(name: str) -> regex.Pattern:
    """The compiled split pattern for `name` ("gpt2" | "gpt4"); ValueError for another name (callers that take
    the name from a user check it first and raise a ConfigError)."""
    if name not in PATTERNS:
        raise ValueError(f"unknown split pattern {name!r}; valid: {', '.join(PATTERNS)}")
    return regex.compile(PATTERNS[name])


def check_pattern(name: str) -> str:
    """`name` if it is a known pattern, else a ConfigError listing the valid names."""
    if name not in PATTERNS:
        from llmfs.errors import ConfigError
        raise ConfigError(f"pattern {name!r} is not one of {', '.join(map(repr, PATTERNS))}; "
                          "use --pattern gpt2 or --pattern gpt4")
    return name


def special_splitter(special_tokens: list[str] | tuple[str, ...]) -> regex.Pattern | None:
    """A pattern that finds special tokens in text, longest first (so `<|a|>` never shadows `<|a|>x`), with a
    capturing group so `split` keeps them. None when there are no special tokens."""
    if not special_tokens:
        return None
    ordered = sorted(special_tokens, key=lambda s: (-len(s), s))
    return regex.compile("(" + "|".join(regex.escape(s) for s in ordered) + ")")
