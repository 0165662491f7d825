"""Interop with Hugging Face `tokenizers`: the saved tokenizer.json encodes and decodes exactly like llmfs, the
fast bulk path equals the Python encoder, and `load` reads back what `save` wrote (and nothing else)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st
from tokenizers import Tokenizer

from llmfs.data.sources import iter_pieces
from llmfs.errors import DataError
from llmfs.tokenizer import BPETokenizer, load, save, train_bpe
from llmfs.tokenizer.hf import bytes_to_unicode

SLICE = 150_000  # characters of each shared corpus: enough for real merges, fast enough for the default run


def _assert_parity(tok, hf: Tokenizer, texts: list[str]) -> None:
    hf.encode_special_tokens = False  # recognise special tokens (tokenizers' default) == allowed_special="all"
    for text in texts:
        ids = tok.encode(text, allowed_special="all")
        assert hf.encode(text, add_special_tokens=False).ids == ids, text
        assert hf.decode(ids, skip_special_tokens=False) == tok.decode(ids) == text
    assert tok.encode_batch(texts, "all") == [tok.encode(t, "all") for t in texts]
    assert tok.encode_batch(texts, "none") == [tok.encode(t) for t in texts]


def test_saved_file_matches_tokenizers(mixed_tok, mixed_lines, tmp_path):
    save(mixed_tok, tmp_path)
    hf = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    texts = mixed_lines + ["".join(mixed_lines), " ".join(mixed_lines) + "   ", "\n".join(mixed_lines) + "\n\n"]
    _assert_parity(mixed_tok, hf, texts)
    assert hf.get_vocab_size() == mixed_tok.vocab_size
    added = {t.content: (i, t.special) for i, t in hf.get_added_tokens_decoder().items()}
    assert added == {"<|endoftext|>": (598, True), "<|pad|>": (599, True)}


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_fast_path_matches_python_on_arbitrary_text(mixed_tok, s):
    assert mixed_tok.encode_batch([s, s + "<|endoftext|>" + s], "all") == \
        [mixed_tok.encode(s, "all"), mixed_tok.encode(s + "<|endoftext|>" + s, "all")]


@pytest.mark.parametrize("name", ["tinyshakespeare.txt", "tinystories-sample.txt"])
def test_parity_on_shared_corpora(name, shared_data, tmp_path):
    path = shared_data(name)
    text = path.read_text(encoding="utf-8")[:SLICE]
    tok = train_bpe([text], 1024, pattern="gpt4", quiet=True)
    save(tok, tmp_path)
    hf = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    held_out = path.read_text(encoding="utf-8")[SLICE:SLICE + 50_000]
    docs = held_out.split("<|endoftext|>")
    _assert_parity(tok, hf, [held_out] + docs[:20])


def test_load_roundtrip_and_views(mixed_tok, tmp_path):
    sha = save(mixed_tok, tmp_path)
    back = load(tmp_path)
    assert isinstance(back, BPETokenizer)
    assert (back.vocab, back.merges, back.special_tokens, back.pattern) == \
        (mixed_tok.vocab, mixed_tok.merges, mixed_tok.special_tokens, mixed_tok.pattern)
    assert len(sha) == 64
    vocab = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    lines = (tmp_path / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#version: 0.2" and len(lines) == 1 + len(mixed_tok.merges)
    table = bytes_to_unicode()
    a, b, z = mixed_tok.merges[0]
    assert lines[1] == " ".join("".join(table[x] for x in mixed_tok.vocab[t]) for t in (a, b))
    assert vocab["Ġ"] == 32 and vocab["Ċ"] == 10 and len(vocab) == len(mixed_tok.vocab)


def test_load_reads_a_file_resaved_by_tokenizers(mixed_tok, tmp_path):
    save(mixed_tok, tmp_path)
    (tmp_path / "re").mkdir()
    Tokenizer.from_file(str(tmp_path / "tokenizer.json")).save(str(tmp_path / "re" / "tokenizer.json"))
    back = load(tmp_path / "re")
    assert (back.merges, back.special_tokens, back.pattern) == \
        (mixed_tok.merges, mixed_tok.special_tokens, mixed_tok.pattern)


def test_bytes_to_unicode_is_gpt2s():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert table[ord("A")] == "A" and table[32] == "Ġ" and table[10] == "Ċ"
    assert table[0] == "Ā" and table[255] == "ÿ"


def test_load_refuses_other_formats(mixed_tok, tmp_path):
    save(mixed_tok, tmp_path)
    doc = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    cases = {
        "model type is 'WordPiece'": {**doc, "model": {**doc["model"], "type": "WordPiece"}},
        "pre_tokenizer is not llmfs's": {**doc, "pre_tokenizer": {"type": "Whitespace"}},
        "has a normalizer": {**doc, "normalizer": {"type": "NFC"}},
        "no 'model' section": {"hello": 1},
    }
    for why, bad in cases.items():
        f = tmp_path / "bad" / "tokenizer.json"
        f.parent.mkdir(exist_ok=True)
        f.write_text(json.dumps(bad), encoding="utf-8")
        with pytest.raises(DataError, match=why) as e:
            load(f.parent)
        assert str(f) in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "bad" / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="not a JSON tokenizer file"):
        load(tmp_path / "bad")
    with pytest.raises(DataError, match="tokenizer file not found"):
        load(tmp_path / "nowhere")


def test_train_on_pieces_from_sources(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("one two three\n<|endoftext|>\nfour five\n" * 20, encoding="utf-8")
    tok = train_bpe((p.text for p in iter_pieces([f])), 280, quiet=True)
    assert tok.decode(tok.encode("one two five")) == "one two five"


@pytest.mark.slow
@pytest.mark.parametrize("pattern", ["gpt4", "gpt2"])
def test_full_corpora_parity(pattern, shared_data, tmp_path):
    """Whole shared corpora at a realistic vocab size (a few seconds each; `pytest -m slow`)."""
    for name in ("tinyshakespeare.txt", "tinystories-sample.txt"):
        path = shared_data(name)
        docs = [p.text for p in iter_pieces([path])]
        tok = train_bpe(docs, 4096, pattern=pattern, quiet=True)
        save(tok, tmp_path / name)
        hf = Tokenizer.from_file(str(tmp_path / name / "tokenizer.json"))
        hf.encode_special_tokens = True  # plain text, like allowed_special="none"
        assert [e.ids for e in hf.encode_batch(docs, add_special_tokens=False)] == [tok.encode(d) for d in docs]
