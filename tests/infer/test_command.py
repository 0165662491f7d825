"""`llmfs generate` end to end on tiny checkpoints: streaming, JSON, seeds, greedy, stops, rolling, errors."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from llmfs import checkpoint as ck
from llmfs.cli import main
from llmfs.infer.generate import generate
from llmfs.infer.load import load_model
from llmfs.infer.sampling import SamplingConfig
from llmfs.model.config import ModelConfig
from llmfs.model.transformer import Transformer
from llmfs.tokenizer.byte import ByteTokenizer
from llmfs.tokenizer.hf import save as save_tokenizer


def save_model(path, tokenizer_json, vocab=300, **model):
    cfg = ModelConfig(**{**dict(vocab_size=vocab, max_seq_len=32, d_model=32, n_layers=2, n_heads=4), **model})
    net = Transformer(cfg, generator=torch.Generator().manual_seed(0))
    return ck.save(path, kind="causal_lm", model_config=dataclasses.asdict(cfg), state_dict=net.state_dict(),
                   tokenizer_json=tokenizer_json)


@pytest.fixture
def run_dir(tmp_path, tokenizer_json):
    """A run directory whose final/ checkpoint has a `tokenizers`-trained byte-level BPE tokenizer.json."""
    save_model(tmp_path / "run" / "final", tokenizer_json, n_kv_heads=2)
    return str(tmp_path / "run")


@pytest.fixture
def byte_ckpt(tmp_path):
    """A checkpoint with the llmfs byte tokenizer: every multi-byte character spans several tokens."""
    save_tokenizer(ByteTokenizer(), tmp_path / "tok")
    return str(save_model(tmp_path / "byte", tmp_path / "tok" / "tokenizer.json", vocab=257))


def gen(capsys, *args):
    code = main(["generate", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_single_prompt_streams_text_and_reports_speed(run_dir, capsys):
    code, out, err = gen(capsys, run_dir, "-p", "the cat", "--max-new-tokens", "8", "--seed", "3")
    assert code == 0 and out.endswith("\n") and "tokens/s" in err
    assert gen(capsys, run_dir, "-p", "the cat", "--max-new-tokens", "8", "--seed", "3")[1] == out  # same seed
    assert any(gen(capsys, run_dir, "-p", "the cat", "--max-new-tokens", "8", "--seed", str(s))[1] != out
               for s in (4, 5, 6))


def test_json_for_prompts_and_file_greedy_equals_the_library(run_dir, tmp_path, capsys):
    (tmp_path / "prompts.txt").write_text("a dog ran\n\nthe mat\n", encoding="utf-8")
    code, out, _ = gen(capsys, run_dir, "--prompt", "the cat", "--file", str(tmp_path / "prompts.txt"), "--json",
                       "--temperature", "0", "--max-new-tokens", "6")
    rows = json.loads(out)
    assert code == 0 and [r["prompt"] for r in rows] == ["the cat", "a dog ran", "the mat"]
    assert set(rows[0]) == {"prompt", "completion", "prompt_tokens", "new_tokens", "finish", "seconds"}
    model, tok, _ = load_model(run_dir)
    for r in rows:
        ids = tok.encode(r["prompt"])
        want = generate(model, [ids], SamplingConfig(temperature=0, max_new_tokens=6), stop_ids=[tok.eot_id])[0]
        assert r["prompt_tokens"] == len(ids) and r["new_tokens"] == len(want) <= 6
        assert r["completion"] == tok.decode([i for i in want if i != tok.eot_id])
        assert r["finish"] in ("stop", "length") and r["seconds"] >= 0
    # --no-cache is the same greedy text; a stop string cuts the completion before it
    uncached = json.loads(gen(capsys, run_dir, "-p", "the cat", "--file", str(tmp_path / "prompts.txt"), "--json",
                              "--temperature", "0", "--max-new-tokens", "6", "--no-cache")[1])
    assert [{**r, "seconds": 0} for r in uncached] == [{**r, "seconds": 0} for r in rows]
    stop = rows[0]["completion"][2:4]
    code, out, _ = gen(capsys, run_dir, "-p", "the cat", "--temperature", "0", "--max-new-tokens", "6",
                       "--stop", stop, "--stop", "never-there")
    assert code == 0 and out == rows[0]["completion"][: rows[0]["completion"].find(stop)] + "\n"


def test_multibyte_text_streams_whole_characters(byte_ckpt, capsys):
    code, out, _ = gen(capsys, byte_ckpt, "-p", "h\u00e9llo \U0001f600", "--max-new-tokens", "20", "--seed", "1",
                       "--top-k", "5", "--top-p", "0.9", "--min-p", "0.05", "--repetition-penalty", "1.2",
                       "--frequency-penalty", "0.1")
    code2, out2, _ = gen(capsys, byte_ckpt, "-p", "h\u00e9llo \U0001f600", "--max-new-tokens", "20", "--seed", "1",
                         "--top-k", "5", "--top-p", "0.9", "--min-p", "0.05", "--repetition-penalty", "1.2",
                         "--frequency-penalty", "0.1", "--json")
    assert code == code2 == 0 and out == json.loads(out2)[0]["completion"] + "\n"


def test_rolling_runs_past_the_context(run_dir, capsys):
    long = " ".join(["the cat sat on the mat"] * 12)
    code, _, err = gen(capsys, run_dir, "-p", long)
    assert code == 2 and err.count("\n") == 1 and "max_seq_len = 32; shorten the prompt or use the rolling " \
                                                  "option (--rolling)" in err
    code, out, _ = gen(capsys, run_dir, "-p", long, "--rolling", "--max-new-tokens", "40", "--json",
                       "--temperature", "0")
    assert code == 0 and json.loads(out)[0]["prompt_tokens"] > 32


@pytest.mark.parametrize("args, message", [
    (["--top-p", "1.5"], "top_p: must be <= 1, got 1.5"),
    (["--temperature", "-1"], "temperature: must be >= 0, got -1.0"),
    (["--top-k", "-2"], "top_k: must be >= 0"),
    (["--max-new-tokens", "0"], "max_new_tokens: must be >= 1"),
    (["--file", "nope.txt"], "nope.txt: prompt file not found"),
    (["--stop", ""], "a stop string needs at least one character"),
    (["--compile", "--no-cache"], "--compile compiles the static-cache decode step; drop --no-cache / --rolling"),
])
def test_bad_options_are_one_line_errors(run_dir, capsys, args, message):
    code, out, err = gen(capsys, run_dir, "-p", "the", *args)
    assert code == 2 and out == "" and err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_a_prompt_file_that_is_not_utf8_is_a_one_line_error(run_dir, tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\u00e9\n".encode("utf-8") + "na\u00efve\n".encode("latin-1"))
    code, out, err = gen(capsys, run_dir, "--file", str(bad))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"{bad}: not UTF-8 text (byte b'\\xef' on line 2); convert it to UTF-8" in err


def test_bad_checkpoints_are_one_line_errors(tmp_path, capsys, tokenizer_json):
    code, _, err = gen(capsys, str(tmp_path / "missing"), "-p", "x")
    assert code == 2 and err == f"error: {tmp_path / 'missing'}: checkpoint directory not found\n"
    (tmp_path / "plain").mkdir()
    code, _, err = gen(capsys, str(tmp_path / "plain"), "-p", "x")
    assert code == 2 and "not a complete llmfs checkpoint" in err and err.count("\n") == 1
    code, _, err = gen(capsys, str(tmp_path / "plain"))
    assert code == 2 and err.count("\n") == 1
    save_model(tmp_path / "learned", tokenizer_json, position="learned")
    code, _, err = gen(capsys, str(tmp_path / "learned"), "-p", "the cat", "--max-new-tokens", "40")
    assert code == 2 and "learned positions end at max_seq_len = 32" in err and err.count("\n") == 1


def test_generate_decodes_through_row_block_linears(run_dir, capsys, monkeypatch):
    """`llmfs generate` on CPU swaps the model's linears for decode_linear.py's (its decode speed depends on it)."""
    import llmfs.infer.decode_linear as dl

    seen = []
    real = dl.use_decode_linears
    monkeypatch.setattr(dl, "use_decode_linears", lambda model, *a, **k: seen.append(real(model, *a, **k)) or seen[-1])
    code, out, _ = gen(capsys, run_dir, "-p", "the cat", "--max-new-tokens", "4", "--temperature", "0")
    assert code == 0 and len(seen) == 1
    assert any(isinstance(m, dl.RowBlockLinear) for m in seen[0].modules())
