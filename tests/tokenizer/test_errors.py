"""Every user mistake is a one-line LlmfsError subclass that names the thing and the fix."""

from __future__ import annotations

import os

import pytest

from llmfs.config import from_dict
from llmfs.errors import ConfigError, DataError
from llmfs.tokenizer import ByteTokenizer, TokenizerConfig, train_bpe
from llmfs.tokenizer.train import encode_files, train_bpe_files


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


def test_missing_input(tmp_path):
    with pytest.raises(DataError) as e:
        train_bpe_files([tmp_path / "nope.txt"], 300, tmp_path / "out", quiet=True)
    assert "nope.txt: input not found" in _one_line(e)


def test_empty_input(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError) as e:
        train_bpe_files([tmp_path / "empty.txt"], 300, tmp_path / "out", quiet=True)
    assert "empty.txt: input holds no text" in _one_line(e)
    (tmp_path / "dir").mkdir()
    with pytest.raises(DataError, match="folder holds no files"):
        train_bpe_files([tmp_path / "dir"], 300, tmp_path / "out", quiet=True)
    with pytest.raises(DataError, match="no input given"):
        train_bpe_files([], 300, tmp_path / "out", quiet=True)


def test_only_special_tokens_is_no_text():
    with pytest.raises(DataError, match="no text outside special tokens"):
        train_bpe(["<|endoftext|><|endoftext|>"], 300, quiet=True)


def test_vocab_size_too_small():
    with pytest.raises(ConfigError) as e:
        train_bpe(["hello"], 257, special_tokens=("<|endoftext|>", "<|pad|>"), quiet=True)
    assert "vocab_size 257 is below 256 byte tokens + 2 special tokens = 258" in _one_line(e)


def test_duplicate_special_token():
    with pytest.raises(ConfigError) as e:
        train_bpe(["hello"], 300, special_tokens=("<|endoftext|>", "<|endoftext|>"), quiet=True)
    assert "'<|endoftext|>' is given twice" in _one_line(e)
    with pytest.raises(ConfigError, match="is empty"):
        ByteTokenizer(("",))
    with pytest.raises(ConfigError, match="special_tokens: lists a token twice"):
        from_dict(TokenizerConfig, {"kind": "byte", "special_tokens": ["<|a|>", "<|a|>"]})


def test_unknown_pattern():
    with pytest.raises(ConfigError) as e:
        train_bpe(["hello"], 300, pattern="gpt5", quiet=True)
    assert "pattern 'gpt5' is not one of 'gpt2', 'gpt4'" in _one_line(e)


def test_unreadable_file(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(("fine line\n" * 5000 + "caf\xe9\n").encode("latin-1"))  # past the first read buffer
    with pytest.raises(DataError) as e:
        train_bpe_files([bad], 300, tmp_path / "out", quiet=True)
    assert "latin1.txt: not UTF-8 text (byte b'\\xe9' on line 5001)" in _one_line(e)
    if os.geteuid() != 0:  # root reads any file
        locked = tmp_path / "locked.txt"
        locked.write_text("secret")
        locked.chmod(0)
        with pytest.raises(DataError, match="locked.txt: cannot read file"):
            train_bpe_files([locked], 300, tmp_path / "out", quiet=True)


def test_tokenizer_directory_from_another_format(tmp_path):
    d = tmp_path / "gpt2-like"
    d.mkdir()
    (d / "tokenizer.json").write_text('{"model": {"type": "Unigram", "vocab": []}}', encoding="utf-8")
    (tmp_path / "in.txt").write_text("hello\n")
    with pytest.raises(DataError) as e:
        encode_files(d, [tmp_path / "in.txt"], tmp_path / "out", quiet=True)
    assert "tokenizer.json: not an llmfs byte-level BPE tokenizer (model type is 'Unigram'" in _one_line(e)
    with pytest.raises(DataError, match="tokenizer file not found"):
        encode_files(tmp_path / "in.txt.d", [tmp_path / "in.txt"], tmp_path / "out", quiet=True)


def test_tokenizer_config_checks():
    with pytest.raises(ConfigError, match="r.toml: kind: a byte tokenizer is not loaded from a path"):
        from_dict(TokenizerConfig, {"kind": "byte", "path": "tok/"}, source="r.toml")
    with pytest.raises(ConfigError, match=r"vocab_size: must be >= 257"):
        from_dict(TokenizerConfig, {"vocab_size": 100}, source="r.toml")
    from llmfs.tokenizer import build_tokenizer

    with pytest.raises(ValueError, match="must be trained on data first"):
        build_tokenizer(from_dict(TokenizerConfig, {"kind": "bpe"}))
