"""Choosing a tokenizer: the recipe's `[tokenizer]` section and the `TOKENIZERS` registry.

    path = "tok/"                 -> load the tokenizer written there (its tokenizer.json says which kind)
    path = "", kind = "byte"      -> ByteTokenizer(special_tokens): nothing to train or load
    path = "", kind = "bpe"       -> a stage that needs one trains a BPE of `vocab_size` on its own data
                                     (`llmfs pretrain`: `train/pretrain_data.py`)
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from llmfs.config import invalid, option
from llmfs.tokenizer.byte import ByteTokenizer
from llmfs.tokenizer.encoder import BPETokenizer

TOKENIZERS = {"bpe": BPETokenizer, "byte": ByteTokenizer}


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    """`[tokenizer]`: use a trained tokenizer, or say how to make one."""

    path: str = ""  # a directory written by `llmfs tokenize train-bpe`; "" = make one (see kind)
    kind: Literal["bpe", "byte"] = "bpe"
    vocab_size: int = option(4096, ge=257, doc="BPE size when training one: 256 bytes + merges + specials")
    pattern: Literal["gpt2", "gpt4"] = "gpt4"
    train_chars: int = option(5_000_000, gt=0, doc="characters of training data a BPE is trained on")
    special_tokens: tuple[str, ...] = ("<|endoftext|>",)  # of a tokenizer made here; a loaded one keeps its own

    def validate(self) -> None:
        if self.path and self.kind == "byte":
            raise invalid("kind", "a byte tokenizer is not loaded from a path; leave path empty")
        if len(set(self.special_tokens)) != len(self.special_tokens):
            raise invalid("special_tokens", "lists a token twice")


def build_tokenizer(cfg: TokenizerConfig) -> BPETokenizer | ByteTokenizer:
    """The tokenizer `cfg` names without training: loaded from `path` (whatever kind the file holds), or a
    byte tokenizer. A BPE with no path has to be trained first; that is the caller's data, so it raises."""
    from llmfs.tokenizer.hf import load

    if cfg.path:
        return load(cfg.path)
    if cfg.kind == "byte":
        return ByteTokenizer(cfg.special_tokens)
    raise ValueError("a BPE tokenizer without a path must be trained on data first (train_bpe)")
