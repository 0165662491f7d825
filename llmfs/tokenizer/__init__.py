"""Tokenizers: byte-level BPE trained from scratch, a byte tokenizer, tokenizer.json interop.

    from llmfs.tokenizer import train_bpe, load, save, ByteTokenizer, StreamingDecoder
    tok = train_bpe(iter_pieces(["data.txt"]), vocab_size=4096)   # llmfs.data.sources.iter_pieces
    save(tok, "tok/"); tok = load("tok/")
    ids = tok.encode("Hello", allowed_special="all"); tok.decode(ids)

The names below are imported on first use (PEP 562 `__getattr__`), so `import llmfs.tokenizer.cli` (the CLI
mounts it) pulls in only typer: no regex, numpy, `tokenizers` or torch until a command runs.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "BPETokenizer": "encoder", "ByteTokenizer": "byte", "StreamingDecoder": "stream",
    "TOKENIZERS": "registry", "TokenizerConfig": "registry", "build_tokenizer": "registry",
    "learn_merges": "bpe", "train_bpe": "bpe",
    "load": "hf", "save": "hf", "sha256": "hf", "to_hf": "hf",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"llmfs.tokenizer.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'llmfs.tokenizer' has no attribute {name!r}")
