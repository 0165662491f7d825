"""Shared fixtures: the shared corpora (skipped when absent) and small trained tokenizers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmfs.tokenizer import train_bpe

REPO = Path(__file__).resolve().parents[2]

# Mixed text that exercises every branch of both split patterns: unicode letters, emoji (4-byte UTF-8, ZWJ
# sequences), CJK, combining marks, whitespace runs (trailing spaces, newlines, tabs, \r\n), digit runs longer
# than 3 (GPT-4 splits them 3 by 3), contractions in both cases, code, and special tokens inside text.
MIXED = [
    "Hello, world! It's a test; don't PANIC — we'll see.  \n",
    "naïve café résumé Ünïcödé ñandú İstanbul straße ΑΒΓ αβγ кириллица",
    "emoji 🤖🚀 family 👨‍👩‍👧 flags 🇫🇷🇯🇵 skin 👍🏽 ✨",
    "中文字符 日本語のテキスト 한국어 텍스트 ภาษาไทย العربية עברית",
    "combining: e\u0301 a\u0308 n\u0303 \u0915\u094d\u0937 Z\u0351\u0360\u035b",
    "spaces    between\t\ttabs \t mixed   \n\n\n  trailing   \n \r\n\r\nend  ",
    "digits 1 12 123 1234 12345 1234567890 3.14159 1,000,000 ²³ ٣٤٥",
    "def f(x):\n    return x**2 + {'a': [1, 2]}  # comment\n\tif (a && b) { c++; }\n",
    "IT'S YOU'LL WE'VE THEY'RE I'M HE'D it's you'll 's 't",
    "<|endoftext|>start<|endoftext|> middle <|endoftext|><|endoftext|>end<|endoftext|>",
    "a<|pad|>b <|endoftext|>\n<|pad|>  ",
    "\x00\x01\x1b[0m control \x7f chars\u200b zero\u00a0width\ufeff",
    "   leading spaces and a trailing newline\n",
    "",
    " ",
    "\n",
]


def find_shared_data(name: str) -> Path:
    """A file from shared/data (next to the repo, or $LLMFS_SHARED_DATA); skip the test when it is absent."""
    candidates = []
    if os.environ.get("LLMFS_SHARED_DATA"):
        candidates.append(Path(os.environ["LLMFS_SHARED_DATA"]) / name)
    candidates.append(REPO / ".." / "shared" / "data" / name)
    for c in candidates:
        if c.is_file():
            return c
    pytest.skip(f"shared corpus {name} not found (set LLMFS_SHARED_DATA)")


def generated_corpus(n: int = 40) -> list[str]:
    """A small deterministic corpus: the mixed lines repeated with varying words, so merges form on them."""
    words = ["the", "cat", "sat", "on", "mat", "über", "naïve", "日本", "🤖", "42", "1234", "if", "x", "return"]
    docs = []
    for i in range(n):
        line = " ".join(words[(i * 7 + k * 3) % len(words)] for k in range(12))
        docs.append(line + "\n" + MIXED[i % len(MIXED)] + "\n")
    return docs


@pytest.fixture(scope="session", params=["gpt4", "gpt2"])
def mixed_tok(request):
    """A BPE trained on generated mixed text, with two special tokens, for each split pattern."""
    return train_bpe(generated_corpus(), 600, special_tokens=("<|endoftext|>", "<|pad|>"),
                     pattern=request.param, quiet=True)


@pytest.fixture(scope="session")
def mixed_lines() -> list[str]:
    return list(MIXED)


@pytest.fixture(scope="session")
def shared_data():
    """`shared_data("tinyshakespeare.txt")` -> Path, or skips the test."""
    return find_shared_data
