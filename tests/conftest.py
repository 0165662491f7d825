"""Shared fixtures: a tiny real tokenizer.json and the optional shared corpora."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("LLMFS_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" /
                                  "data"))


def shared_file(name: str) -> Path:
    """A file of ../shared/data (real public corpora), or skip: a user's clone does not have it."""
    p = SHARED_DATA / name
    if not p.is_file():
        pytest.skip(f"{p} is not present (shared corpora live beside the repository)")
    return p


def make_tokenizer_json(path: Path, vocab_size: int = 300) -> Path:
    """A small byte-level BPE tokenizer.json trained by `tokenizers`, with one special token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(["the cat sat on the mat. " * 20, "a dog ran after the cat! " * 20], trainer)
    tok.save(str(path))
    return path


@pytest.fixture
def tokenizer_json(tmp_path_factory) -> Path:
    return make_tokenizer_json(tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.fixture(autouse=True)
def exact_fp32_matmuls_between_tests():
    """`runtime.setup` sets torch's process-wide fp32 matmul precision from `run.matmul_precision`; put torch's
    default back after each test, so a test that ran a stage with "medium" cannot loosen the next test's
    parity checks."""
    import torch

    yield
    torch.set_float32_matmul_precision("highest")
