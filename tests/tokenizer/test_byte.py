"""The byte tokenizer: ids are UTF-8 bytes, specials follow, tokenizer.json encodes identically."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
from tokenizers import Tokenizer

from llmfs.tokenizer import ByteTokenizer, TokenizerConfig, build_tokenizer, load, save


def test_ids_are_bytes_and_specials_follow():
    tok = ByteTokenizer(("<|endoftext|>", "<|pad|>"))
    assert tok.vocab_size == 258 and tok.eot_id == 256
    assert tok.encode("hé") == [104, 195, 169]
    assert tok.encode("a<|pad|>", allowed_special="all") == [97, 257]
    assert tok.encode("a<|pad|>") == list(b"a<|pad|>")
    assert tok.decode([104, 195, 169, 256, 999]) == "hé<|endoftext|>\ufffd"


def test_saved_file_matches_tokenizers_and_loads_back(tmp_path, mixed_lines):
    tok = ByteTokenizer(("<|endoftext|>", "<|pad|>"))
    save(tok, tmp_path)
    hf = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in mixed_lines + ["".join(mixed_lines)]:
        ids = tok.encode(text, allowed_special="all")
        assert hf.encode(text, add_special_tokens=False).ids == ids
        assert hf.decode(ids, skip_special_tokens=False) == text
    back = load(tmp_path)
    assert isinstance(back, ByteTokenizer) and back.special_tokens == tok.special_tokens


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_roundtrip(s):
    tok = ByteTokenizer()
    assert tok.decode(tok.encode(s)) == s


def test_selected_by_kind(tmp_path, mixed_tok):
    assert isinstance(build_tokenizer(TokenizerConfig(kind="byte")), ByteTokenizer)
    save(mixed_tok, tmp_path)
    assert build_tokenizer(TokenizerConfig(kind="bpe", path=str(tmp_path))).merges == mixed_tok.merges
