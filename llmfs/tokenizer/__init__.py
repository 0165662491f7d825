"""Tokenizers: byte-level BPE trained from scratch, a byte tokenizer, tokenizer.json interop.

    from llmfs.tokenizer import train_bpe, load, save, ByteTokenizer, StreamingDecoder
    tok = train_bpe(iter_pieces(["data.txt"]), vocab_size=4096)   # llmfs.data.sources.iter_pieces
    save(tok, "tok/"); tok = load("tok/")
    ids = tok.encode("Hello", allowed_special="all"); tok.decode(ids)

Importing this package imports no torch and no `tokenizers` (that one is imported on first export / bulk encode).
"""

from llmfs.tokenizer.bpe import learn_merges, train_bpe
from llmfs.tokenizer.byte import ByteTokenizer
from llmfs.tokenizer.encoder import BPETokenizer
from llmfs.tokenizer.hf import load, save, sha256, to_hf
from llmfs.tokenizer.registry import TOKENIZERS, TokenizerConfig, build_tokenizer
from llmfs.tokenizer.stream import StreamingDecoder

__all__ = ["BPETokenizer", "ByteTokenizer", "StreamingDecoder", "TOKENIZERS", "TokenizerConfig",
           "build_tokenizer", "learn_merges", "load", "save", "sha256", "to_hf", "train_bpe"]
