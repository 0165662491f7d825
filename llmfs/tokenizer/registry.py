"""Choosing a tokenizer by kind: the `[tokenizer]` recipe section and the `TOKENIZERS` registry.

    kind = "bpe"  -> load the trained BPE from `path` (a directory holding tokenizer.json)
    kind = "byte" -> ByteTokenizer(special_tokens); `path` must be empty (nothing to load)
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from llmfs.config import invalid
from llmfs.tokenizer.byte import ByteTokenizer
from llmfs.tokenizer.encoder import BPETokenizer

TOKENIZERS = {"bpe": BPETokenizer, "byte": ByteTokenizer}


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    """`[tokenizer]`: which tokenizer a stage uses."""

    kind: Literal["bpe", "byte"] = "bpe"
    path: str = ""  # directory with tokenizer.json (kind "bpe")
    special_tokens: tuple[str, ...] = ("<|endoftext|>",)  # kind "byte" only; a BPE keeps its own

    def validate(self) -> None:
        if self.kind == "bpe" and not self.path:
            raise invalid("path", "kind 'bpe' needs the directory of a trained tokenizer (llmfs tokenize train-bpe)")
        if self.kind == "byte" and self.path:
            raise invalid("path", "kind 'byte' loads nothing; leave path empty or use kind = 'bpe'")
        if len(set(self.special_tokens)) != len(self.special_tokens):
            raise invalid("special_tokens", "lists a token twice")


def build_tokenizer(cfg: TokenizerConfig) -> BPETokenizer | ByteTokenizer:
    """The tokenizer `cfg` describes. A "bpe" path is loaded through `hf.load`, so its kind is whatever the file
    holds (a byte tokenizer saved with `save` loads back as one)."""
    from llmfs.tokenizer.hf import load

    if cfg.kind == "byte":
        return ByteTokenizer(cfg.special_tokens)
    return load(cfg.path)
