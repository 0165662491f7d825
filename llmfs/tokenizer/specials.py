"""Special tokens: checking a list, and finding them in text.

A special token (`<|endoftext|>`) has its own id, is never merged with neighbouring text and never produced by
the split pattern. In `encode`, text that literally spells a special token becomes that token only when the
token is allowed (`allowed_special`); otherwise it is encoded as ordinary bytes. tiktoken raises on a
disallowed special found in text by default; llmfs encodes it as text instead (`"none"` is the safe default for
raw corpora, and a later stage that wants specials passes `"all"`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Literal, Union

from llmfs.errors import ConfigError

AllowedSpecial = Union[Literal["all", "none"], Collection[str]]


def check_specials(special_tokens: tuple[str, ...]) -> tuple[str, ...]:
    """The tuple, or a ConfigError for an empty or duplicated token."""
    seen: set[str] = set()
    for tok in special_tokens:
        if not isinstance(tok, str) or not tok:
            raise ConfigError(f"special token {tok!r} is empty; give non-empty strings such as '<|endoftext|>'")
        if tok in seen:
            raise ConfigError(f"special token {tok!r} is given twice; list each special token once")
        seen.add(tok)
    return special_tokens


def allowed_set(allowed: AllowedSpecial, specials: dict[str, int]) -> frozenset[str]:
    """The special tokens `encode` should recognise for `allowed_special`."""
    if allowed == "all":
        return frozenset(specials)
    if allowed == "none":
        return frozenset()
    if isinstance(allowed, str):
        raise ValueError(f"allowed_special must be 'all', 'none' or a collection of tokens, got {allowed!r}")
    unknown = set(allowed) - set(specials)
    if unknown:
        raise ValueError(f"allowed_special names tokens that are not special tokens: {sorted(unknown)}")
    return frozenset(allowed)


def encode_with_specials(text: str, allowed_special: AllowedSpecial, specials: dict[str, int], splitter,
                         encode_ordinary: Callable[[str], list[int]]) -> list[int]:
    """Cut `text` at allowed special tokens, encode the text between them with `encode_ordinary`. A special
    token that is not allowed stays text and is encoded together with its neighbours."""
    allowed = allowed_set(allowed_special, specials)
    if not allowed or splitter is None:
        return encode_ordinary(text)
    out: list[int] = []
    buf = ""
    for k, part in enumerate(splitter.split(text)):  # [text, special, text, special, ..., text]
        if k % 2 == 1 and part in allowed:
            out.extend(encode_ordinary(buf))
            out.append(specials[part])
            buf = ""
        else:
            buf += part
    out.extend(encode_ordinary(buf))
    return out
