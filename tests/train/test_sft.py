"""`llmfs sft` end to end on a tiny model: loss drops, chat checkpoint, exact resume, batching equivalences,
vocabulary growth, preflight and bad data."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from llmfs import checkpoint as ck
from llmfs.cli import main
from llmfs.config import load_recipe
from llmfs.errors import LlmfsError
from llmfs.model.config import ModelConfig
from llmfs.model.transformer import Transformer
from llmfs.tokenizer.byte import ByteTokenizer
from llmfs.tokenizer.chat import TEMPLATE_FILE, with_chat_tokens
from llmfs.tokenizer.hf import save
from llmfs.train.sft import SFTRecipe, preflight, run

RECIPE = """
init_from = "{base}"

[run]
name = "sft"
out_dir = "{out}"

[data]
train = "{train}"
valid = "{valid}"
seq_len = 48
batch_size = 8

[optim]
lr = 3e-3

[schedule]
warmup_steps = 2

[train]
max_steps = 30
eval_every = 0
save_every = 10

[eval]
loss_examples = 16
examples = 8
max_new_tokens = 6

[log]
every = 5
console = "none"
"""

WORDS = ["cat", "dog", "sun", "red", "box", "map", "owl", "pen", "cup", "hat", "jam", "kit"]


def write_jsonl(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            w = rng.choice(WORDS)
            f.write(json.dumps({"messages": [{"role": "user", "content": f"say {w}"},
                                             {"role": "assistant", "content": w}],
                                "task": "echo", "answer": w}) + "\n")
    return path


def make_base(d: Path) -> Path:
    """A random tiny causal LM with a byte tokenizer that has no chat tokens (257 ids)."""
    save(ByteTokenizer(), d / "tok")
    cfg = ModelConfig(vocab_size=257, max_seq_len=64, d_model=32, n_layers=2, n_heads=4)
    net = Transformer(cfg, generator=torch.Generator().manual_seed(0))
    return ck.save(d / "ckpt", kind="causal_lm", model_config=dataclasses.asdict(cfg), state_dict=net.state_dict(),
                   tokenizer_json=d / "tok" / "tokenizer.json")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return make_base(tmp_path_factory.mktemp("base"))


def recipe_file(tmp_path: Path, base: Path, **data_files: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    train = data_files.get("train") or write_jsonl(tmp_path / "train.jsonl", 64, 0)
    valid = data_files.get("valid") or write_jsonl(tmp_path / "valid.jsonl", 16, 1)
    p = tmp_path / "sft.toml"
    p.write_text(RECIPE.format(base=base, out=tmp_path / "runs", train=train, valid=valid))
    return p


def rows(run_dir: Path, kind: str = "train") -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def test_sft_learns_and_writes_a_chat_checkpoint(tmp_path, base):
    final = run(load_recipe(recipe_file(tmp_path, base), SFTRecipe), quiet=True)
    losses = [r["loss"] for r in rows(final.parent)]
    assert losses[-1] < losses[0] - 1.0  # nats; from a random model in 30 steps
    evals = rows(final.parent, "eval")
    assert [r["step"] for r in evals] == [0, 30]  # baseline, then the end
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    assert {"exact_match", "f1", "stop_rate", "exact_match/echo"} <= evals[-1].keys()
    ckpt = ck.open_checkpoint(final)
    assert TEMPLATE_FILE in ckpt.files and ckpt.model_config["vocab_size"] == 261
    assert ckpt.extra["vocab_resized"]["from"] == 257 and ckpt.extra["vocab_resized"]["to"] == 261
    assert ckpt.lineage["parent"]["path"] == str(base)
    data = rows(final.parent, "data")[0]
    assert (data["train_conversations"], data["cut"], data["dropped"]) == (64, 0, 0)


def test_stop_and_resume_is_bitwise_identical(tmp_path, base):
    p = recipe_file(tmp_path, base)
    full = run(load_recipe(p, SFTRecipe), quiet=True)
    src, dst = full.parent, tmp_path / "resumed" / "sft"
    dst.mkdir(parents=True)
    for name in ("recipe.toml", "tokenizer", "step-000020"):
        (shutil.copytree if (src / name).is_dir() else shutil.copyfile)(src / name, dst / name)
    (dst / "latest").write_text("step-000020\n")
    again = run(load_recipe(p, SFTRecipe, [f'run.out_dir="{tmp_path / "resumed"}"']), resume=True, force=True,
                quiet=True)
    assert [r["loss"] for r in rows(src) if r["step"] > 20] == [r["loss"] for r in rows(dst)]
    from safetensors.torch import load_file

    a, b = load_file(str(full / ck.MODEL_FILE)), load_file(str(again / ck.MODEL_FILE))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("change", [["data.micro_batch_size=2"], ["data.packing=false"]],
                         ids=["accumulation", "padding"])
def test_loss_is_the_token_mean_of_the_global_batch(tmp_path, base, change):
    common = ["train.max_steps=4", "train.save_every=0", "log.every=1", "eval.baseline=false"]
    p = recipe_file(tmp_path, base)
    a = run(load_recipe(p, SFTRecipe, common + ["run.name=a"]), quiet=True)
    b = run(load_recipe(p, SFTRecipe, common + ["run.name=b", *change]), quiet=True)
    assert [r["loss"] for r in rows(b.parent)] == pytest.approx([r["loss"] for r in rows(a.parent)], abs=1e-5)


def test_moe_padding_is_not_routed(tmp_path):
    """An MoE model trained on padded batches matches the same batches packed (no padding inside a
    conversation's rows): the pads take no part in routing, so the balance loss and the training agree."""
    save(ByteTokenizer(), tmp_path / "tok")
    cfg = ModelConfig(vocab_size=257, max_seq_len=64, d_model=32, n_layers=2, n_heads=4, n_experts=4, top_k=2)
    net = Transformer(cfg, generator=torch.Generator().manual_seed(0))
    moe_base = ck.save(tmp_path / "ckpt", kind="causal_lm", model_config=dataclasses.asdict(cfg),
                       state_dict=net.state_dict(), tokenizer_json=tmp_path / "tok" / "tokenizer.json")
    common = ["train.max_steps=4", "train.save_every=0", "log.every=1", "eval.baseline=false"]
    p = recipe_file(tmp_path / "r", moe_base)
    packed = rows(run(load_recipe(p, SFTRecipe, common + ["run.name=packed"]), quiet=True).parent)
    padded = rows(run(load_recipe(p, SFTRecipe, common + ["run.name=padded", "data.packing=false"]),
                      quiet=True).parent)
    assert [r["moe_aux"] for r in padded] == pytest.approx([r["moe_aux"] for r in packed], abs=1e-6)
    assert [r["loss"] for r in padded] == pytest.approx([r["loss"] for r in packed], abs=1e-5)


def test_preflight_refuses_end_of_turn_as_padding():
    tok = with_chat_tokens(ByteTokenizer())
    cfg = ModelConfig(vocab_size=261, max_seq_len=16, d_model=16, n_layers=1, n_heads=2)
    convs = [[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]]
    preflight(tok, cfg, convs, pad_id=256)
    with pytest.raises(LlmfsError, match="end-of-turn token is also the padding token"):
        preflight(tok, cfg, convs, pad_id=tok.special_tokens["<|end|>"])
    with pytest.raises(LlmfsError, match="261 ids but the model only 257"):
        preflight(tok, dataclasses.replace(cfg, vocab_size=257), convs, pad_id=256)


def test_bad_inputs_are_one_line_errors(tmp_path, base, capsys):
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, 4, 0)
    with open(bad, "a", encoding="utf-8") as f:
        f.write(json.dumps({"messages": [{"role": "user", "content": "hello?"}]}) + "\n")
    p = recipe_file(tmp_path, base, train=bad)
    assert main(["sft", str(p), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "record 4" in err and "no assistant reply" in err and err.count("\n") == 1

    (tmp_path / "nofield.jsonl").write_text(json.dumps({"prompt": "x"}) + "\n")
    assert main(["sft", str(recipe_file(tmp_path, base, train=tmp_path / "nofield.jsonl")), "--quiet"]) == 2
    assert "needs 'messages'" in capsys.readouterr().err

    with_model = tmp_path / "model.toml"
    with_model.write_text(p.read_text() + "\n[model]\nd_model = 64\n")
    assert main(["sft", str(with_model), "--quiet"]) == 2
    assert "model" in capsys.readouterr().err

    missing = tmp_path / "missing.toml"
    missing.write_text(p.read_text().replace(str(base), str(tmp_path / "nope")))
    assert main(["sft", str(missing), "--quiet"]) == 2
    assert "checkpoint directory not found" in capsys.readouterr().err


@pytest.mark.slow
def test_small_then_sft_follows_instructions_and_chats(tmp_path, monkeypatch, capsys):
    """The issue's acceptance on the README's recipes: pretrain small, then SFT; easy (level 1) tasks reach >= 50%
    exact match from a 0% baseline, >= 95% of replies stop at <|end|>, and `llmfs chat` answers a built-in task.
    Measured 2026-11-30 with the 4800-step sft.toml (80000 conversations, two-step arithmetic) on the full small
    run (2-core machine, about 11 minutes for the SFT): level 1 exact match 0.976 (greeting 1.0), all tasks 0.92,
    stop rate 1.0. (The 2400-step recipe of 2026-11-29 reached level 1 0.94, all tasks 0.59-0.625; the 600-step
    recipe of 2026-11-22 level 1 0.62-0.80.)"""
    import io

    from llmfs.data.builtin import iter_builtin
    from llmfs.train.pretrain import PretrainRecipe
    from llmfs.train.pretrain import run as pretrain

    recipes = Path(__file__).resolve().parents[2] / "recipes"
    pretrain(load_recipe(recipes / "small.toml", PretrainRecipe, [f'run.out_dir="{tmp_path}"']), quiet=True)
    final = run(load_recipe(recipes / "sft.toml", SFTRecipe, [f'run.out_dir="{tmp_path}"',
                                                             f'init_from="{tmp_path / "small"}"']), quiet=True)
    evals = rows(final.parent, "eval")
    assert evals[0]["step"] == 0 and evals[0]["exact_match/level1"] < 0.1
    assert evals[-1]["exact_match/level1"] >= 0.5 and evals[-1]["stop_rate"] >= 0.95

    tasks = [r for r in iter_builtin("builtin:instructions", split="valid")
             if r["task"] == "greeting" and len(r["messages"]) == 2][:3]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n/reset\n".join(r["messages"][0]["content"] for r in tasks)
                                                 + "\n"))
    assert main(["chat", str(final), "--temperature", "0"]) == 0
    replies = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("[")]
    assert sum(reply.strip() == r["answer"] for reply, r in zip(replies, tasks)) >= 2
