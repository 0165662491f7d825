"""`llmfs tokenize train-bpe | encode | stats` end to end through Typer's CliRunner on the sub-app."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from llmfs.errors import DataError
from llmfs.tokenizer import load
from llmfs.tokenizer.cli import app
from llmfs.tokenizer.shard_writer import read_index, read_tokens

DOCS = [f"Story {i}: the cat sat on the mat {i * 13} times. Naïve 🤖 says hi!\nThe end.\n" for i in range(60)]


@pytest.fixture()
def corpus(tmp_path):
    f = tmp_path / "stories.txt"
    f.write_text("".join(d + "<|endoftext|>\n" for d in DOCS), encoding="utf-8")
    return f


def _ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_train_encode_stats(tmp_path, corpus):
    runner = CliRunner()
    tok_dir = tmp_path / "tok"
    out = _ok(runner.invoke(app, ["train-bpe", "--input", str(corpus), "--vocab-size", "300", "--out", str(tok_dir),
                                  "--pattern", "gpt2", "--workers", "2", "--quiet"]))
    assert "vocab 300" in out
    assert {p.name for p in tok_dir.iterdir()} == {"tokenizer.json", "vocab.json", "merges.txt"}
    tok = load(tok_dir)
    assert tok.pattern == "gpt2" and tok.special_tokens == {"<|endoftext|>": 299}

    shards = tmp_path / "shards"
    _ok(runner.invoke(app, ["encode", "--tokenizer", str(tok_dir), "--input", str(corpus), "--out", str(shards),
                            "--workers", "2", "--shard-tokens", "500", "--quiet"]))
    index = read_index(shards)
    assert index["dtype"] == "uint16" and index["documents"] == len(DOCS) and index["vocab_size"] == 300
    assert len(index["shards"]) > 1 and index["tokenizer_sha256"] == \
        __import__("hashlib").sha256((tok_dir / "tokenizer.json").read_bytes()).hexdigest()
    assert not (tmp_path / "shards.tmp").exists()
    first = np.memmap(shards / index["shards"][0]["file"], dtype=np.uint16, mode="r")
    assert len(first) == index["shards"][0]["tokens"] == 500
    tokens = read_tokens(shards)
    assert len(tokens) == index["total_tokens"]
    docs = tok.decode(tokens.tolist()).split("<|endoftext|>")
    assert docs == DOCS + [""]  # every document is followed by the end-of-text token

    out = _ok(runner.invoke(app, ["stats", "--tokenizer", str(tok_dir), "--input", str(corpus), "--top", "3"]))
    assert "bytes/token" in out and "vocab use" in out and "longest tokens:" in out
    assert len([line for line in out.splitlines() if "bytes  '" in line]) == 3


def test_encode_refuses_existing_output(tmp_path, corpus):
    runner = CliRunner()
    _ok(runner.invoke(app, ["train-bpe", "-i", str(corpus), "--vocab-size", "270", "-o", str(tmp_path / "t"), "-q"]))
    (tmp_path / "s").mkdir()
    r = runner.invoke(app, ["encode", "-t", str(tmp_path / "t"), "-i", str(corpus), "-o", str(tmp_path / "s")])
    assert r.exit_code != 0 and isinstance(r.exception, DataError) and "already exists" in str(r.exception)


def test_bad_input_surfaces_as_llmfs_error(tmp_path):
    r = CliRunner().invoke(app, ["train-bpe", "-i", str(tmp_path / "missing.txt"), "--vocab-size", "300",
                                 "-o", str(tmp_path / "t")])
    assert isinstance(r.exception, DataError) and "missing.txt: input not found" in str(r.exception)


def test_cli_module_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, llmfs.tokenizer.cli; heavy = {'torch', 'numpy', 'tokenizers', 'datasets', 'regex'}; "
            "print(sorted(heavy & set(sys.modules)))")
    repo = Path(__file__).resolve().parents[2]  # the package is not installed: import it from the checkout
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo).stdout
    assert json.loads(out.replace("'", '"')) == []


def test_progress_bar_on_a_terminal(monkeypatch, capsys):
    import sys

    from llmfs.tokenizer import train_bpe
    from llmfs.tokenizer.progress import Progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert Progress(quiet=False).enabled and not Progress(quiet=True).enabled
    tok = train_bpe(DOCS, 300, quiet=False)  # draws rich bars on stderr; must not change the result
    assert tok.merges == train_bpe(DOCS, 300, quiet=True).merges
    assert "merging" in capsys.readouterr().err


def test_jsonl_input_with_field_and_cache_dir(tmp_path):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"content": d, "n": i}) + "\n" for i, d in enumerate(DOCS)), encoding="utf-8")
    runner = CliRunner()
    cache = tmp_path / "cache"
    result = runner.invoke(app, ["train-bpe", "--input", str(corpus), "--vocab-size", "280", "--out",
                                 str(tmp_path / "tok"), "--cache-dir", str(cache), "--quiet"])
    assert isinstance(result.exception, DataError)
    assert str(result.exception).endswith("rows have no 'text' field (fields: content, n); map a column to it: "
                                          "--field content")
    _ok(runner.invoke(app, ["train-bpe", "--input", str(corpus), "--vocab-size", "280", "--out", str(tmp_path / "tok"),
                            "--field", "content", "--cache-dir", str(cache), "--quiet"]))
    _ok(runner.invoke(app, ["encode", "--tokenizer", str(tmp_path / "tok"), "--input", str(corpus), "--out",
                            str(tmp_path / "shards"), "--field", "content", "--cache-dir", str(cache), "--quiet"]))
    assert read_index(tmp_path / "shards")["documents"] == len(DOCS)
    assert any(cache.iterdir())
