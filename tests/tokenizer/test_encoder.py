"""Encoder / decoder: round trips, special tokens, decode never raising, streaming decode."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from llmfs.tokenizer import ByteTokenizer, StreamingDecoder


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_roundtrip_arbitrary_unicode(mixed_tok, s):
    assert mixed_tok.decode(mixed_tok.encode(s)) == s
    assert mixed_tok.decode(mixed_tok.encode(s, allowed_special="all")) == s


@settings(max_examples=200, deadline=None)
@given(st.binary())
def test_arbitrary_bytes_never_fail(mixed_tok, data):
    escaped = data.decode("utf-8", errors="surrogateescape")  # undecodable bytes -> lone surrogates
    ids = mixed_tok.encode(escaped)
    assert mixed_tok.decode_bytes(ids) == data  # the raw bytes come back exactly
    assert mixed_tok.decode(ids) == data.decode("utf-8", errors="replace")
    replaced = data.decode("utf-8", errors="replace")
    assert mixed_tok.decode(mixed_tok.encode(replaced)) == replaced
    byte_tok = ByteTokenizer()
    assert byte_tok.decode_bytes(byte_tok.encode(escaped)) == data


def test_other_lone_surrogates_do_not_raise(mixed_tok):
    assert mixed_tok.decode(mixed_tok.encode("a\ud800b")) == "a\ufffd\ufffd\ufffdb"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-5, 700), max_size=40))
def test_decode_never_raises_and_unknown_ids_become_replacement(mixed_tok, ids):
    text = mixed_tok.decode(ids)
    assert isinstance(text, str)
    n_unknown = sum(not 0 <= i < mixed_tok.vocab_size for i in ids)
    assert text.count("\ufffd") >= n_unknown


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_streaming_decoder_matches_decode(mixed_tok, s):
    ids = mixed_tok.encode(s)
    d = StreamingDecoder(mixed_tok)
    pieces = [d.feed(i) for i in ids]
    assert "".join(pieces) + d.flush() == mixed_tok.decode(ids) == s
    assert "\ufffd" not in "".join(pieces) or "\ufffd" in s  # never emits half a character


def test_streaming_decoder_waits_for_complete_characters():
    tok = ByteTokenizer()
    d = StreamingDecoder(tok)
    robot = "🤖".encode("utf-8")  # 4 bytes: nothing until the last one
    assert [d.feed(b) for b in robot] == ["", "", "", "🤖"]
    assert d.feed(0xE6) == "" and d.flush() == "\ufffd"  # dangling start byte at the end of the stream
    assert d.feed(0xFF) == "\ufffd"  # invalid byte: replaced at once


def test_special_tokens_only_when_allowed(mixed_tok, mixed_lines):
    eot, pad = mixed_tok.special_tokens["<|endoftext|>"], mixed_tok.special_tokens["<|pad|>"]
    text = "a<|endoftext|>b<|pad|>c"
    assert eot not in mixed_tok.encode(text) and pad not in mixed_tok.encode(text)
    assert mixed_tok.encode(text).count(eot) == 0
    ids = mixed_tok.encode(text, allowed_special="all")
    assert ids.count(eot) == 1 and ids.count(pad) == 1
    only_eot = mixed_tok.encode(text, allowed_special={"<|endoftext|>"})
    assert eot in only_eot and pad not in only_eot
    assert mixed_tok.decode(only_eot) == text
    for line in mixed_lines:  # plain text never yields a special id
        assert not set(mixed_tok.encode(line.replace("<|", "<"))) & {eot, pad}
    with pytest.raises(ValueError, match="not special tokens"):
        mixed_tok.encode(text, allowed_special={"<|nope|>"})


def test_gpt4_pattern_splits_digits_in_threes():
    from llmfs.tokenizer import train_bpe
    from llmfs.tokenizer.patterns import compile_pattern

    assert compile_pattern("gpt4").findall("x 1234567") == ["x", " ", "123", "456", "7"]
    assert compile_pattern("gpt2").findall("x 1234567") == ["x", " 1234567"]
    tok = train_bpe(["1234567890 " * 50], 300, pattern="gpt4", quiet=True)
    pieces = [tok.decode([i]) for i in tok.encode("98765432101234567")]
    assert all(len(p) <= 3 for p in pieces) and "".join(pieces) == "98765432101234567"


def test_cache_is_per_instance_and_bounded(mixed_tok):
    from llmfs.tokenizer.encoder import CACHE_LIMIT

    mixed_tok.encode(" ".join(f"w{i}" for i in range(CACHE_LIMIT + 10)))
    assert 0 < len(mixed_tok._cache) <= CACHE_LIMIT
