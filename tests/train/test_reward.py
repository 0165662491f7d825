"""`llmfs reward train` end to end on a tiny model: held-out accuracy rises, the checkpoint scores through
`llmfs reward score`, exact resume (also with lm_coef), one-line errors. The acceptance run on the small model is
in test_rlhf_acceptance.py."""

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
from llmfs.errors import ConfigError
from llmfs.model.config import ModelConfig
from llmfs.model.transformer import Transformer
from llmfs.tokenizer.byte import ByteTokenizer
from llmfs.tokenizer.hf import save
from llmfs.train.reward import RewardRecipe, pair_metrics, pearson, run

RECIPE = """
init_from = "{base}"

[run]
name = "reward"
out_dir = "{out}"

[data]
train = "{train}"
valid = "{valid}"
seq_len = 32
batch_size = 8

[optim]
lr = 1e-2

[schedule]
warmup_steps = 2

[train]
max_steps = 40
eval_every = 20
save_every = 10

[eval]
pairs = 64

[log]
every = 5
console = "none"
"""

WORDS = ["cat", "dog", "sun", "red"]


def write_pairs(path: Path, n: int, seed: int) -> Path:
    """chosen = the word the prompt asks for, rejected = another word: learnable only by reading the prompt."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            w, other = rng.sample(WORDS, 2)
            f.write(json.dumps({"prompt": f"say {w}", "chosen": w, "rejected": other,
                                "defect": rng.choice(["a", "b"])}) + "\n")
    return path


def tiny_parent(d: Path, *, tied: bool = True) -> tuple[Path, Transformer]:
    """A random tiny causal LM checkpoint under `d` with a byte tokenizer that has no chat tokens (257 ids), and
    the Transformer it holds."""
    save(ByteTokenizer(), d / "tok")
    cfg = ModelConfig(vocab_size=257, max_seq_len=32, d_model=32, n_layers=2, n_heads=4, tie_embeddings=tied)
    net = Transformer(cfg, generator=torch.Generator().manual_seed(0))
    return ck.save(d / "ckpt", kind="causal_lm", model_config=dataclasses.asdict(cfg), state_dict=net.state_dict(),
                   tokenizer_json=d / "tok" / "tokenizer.json"), net


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tiny_parent(tmp_path_factory.mktemp("base"))[0]


def recipe_file(tmp_path: Path, base: Path, train: Path | None = None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    train = train or write_pairs(tmp_path / "train.jsonl", 256, 0)
    valid = write_pairs(tmp_path / "valid.jsonl", 64, 1)
    p = tmp_path / "reward.toml"
    p.write_text(RECIPE.format(base=base, out=tmp_path / "runs", train=train, valid=valid))
    return p


def rows(run_dir: Path, kind: str = "train") -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def test_reward_learns_and_the_checkpoint_scores(tmp_path, base, capsys):
    final = run(load_recipe(recipe_file(tmp_path, base), RewardRecipe), quiet=True)
    evals = rows(final.parent, "eval")
    assert [r["step"] for r in evals] == [0, 20, 40]
    assert evals[-1]["accuracy"] >= 0.8 > evals[0]["accuracy"]
    assert evals[-1]["margin"] > evals[0]["margin"] and {"accuracy/a", "accuracy/b", "length_corr"} <= evals[-1].keys()
    ckpt = ck.open_checkpoint(final)
    assert ckpt.kind == "reward" and ckpt.model_config["vocab_size"] == 261
    assert ckpt.extra["reward_std"] == pytest.approx(evals[-1]["reward_std"])
    assert ckpt.extra["eval"]["accuracy"] == evals[-1]["accuracy"] and ckpt.extra["seq_len"] == 32
    assert ckpt.lineage["parent"]["path"] == str(base)

    assert main(["reward", "score", str(final.parent), "--prompt", "say sun", "--response", "sun"]) == 0
    good = float(capsys.readouterr().out)
    pairs = tmp_path / "score.jsonl"
    pairs.write_text(json.dumps({"prompt": "say sun", "response": "sun"}) + "\n"
                     + json.dumps({"prompt": "say sun", "response": "dog"}) + "\n")
    assert main(["reward", "score", str(final), "--file", str(pairs)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[0]["reward"] == pytest.approx(good, abs=1e-5) and lines[0]["reward"] > lines[1]["reward"]


def assert_resume_is_exact(recipe: Path, overrides: list[str], out: Path) -> Path:
    """Run `recipe` to its end; copy its step-10 checkpoint into `out`, resume from it there; the losses after
    step 10 and the final weights must be identical. Returns the first run's final checkpoint."""
    from safetensors.torch import load_file

    full = run(load_recipe(recipe, RewardRecipe, overrides), quiet=True)
    src, dst = full.parent, out / "reward"
    dst.mkdir(parents=True)
    for name in ("recipe.toml", "tokenizer", "step-000010"):
        (shutil.copytree if (src / name).is_dir() else shutil.copyfile)(src / name, dst / name)
    (dst / "latest").write_text("step-000010\n")
    again = run(load_recipe(recipe, RewardRecipe, [*overrides, f'run.out_dir="{out}"']), resume=True, force=True,
                quiet=True)
    assert [r["loss"] for r in rows(src) if r["step"] > 10] == [r["loss"] for r in rows(dst)]
    a, b = load_file(str(full / ck.MODEL_FILE)), load_file(str(again / ck.MODEL_FILE))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)
    return full


def test_stop_and_resume_is_bitwise_identical(tmp_path, base):
    p = recipe_file(tmp_path, base)
    common = ["train.max_steps=14", "train.eval_every=0", "eval.baseline=false", "log.every=1"]
    assert_resume_is_exact(p, common, tmp_path / "resumed")


def test_a_resumed_run_keeps_the_held_out_statistics_in_its_step_checkpoints(tmp_path, base):
    """Resumed at step 8 (evaluated there), the step-12 checkpoint saved before the next evaluation still holds
    step 8's reward_mean / reward_std, as in the uninterrupted run: PPO normalises rewards with them (a null there
    used to crash PPO). A checkpoint saved before any evaluation holds nulls, and PPO reads it without them."""
    p = recipe_file(tmp_path, base)
    common = ["train.max_steps=16", "train.eval_every=8", "train.save_every=4", "train.keep_last=4",
              "eval.baseline=false"]
    full = run(load_recipe(p, RewardRecipe, common), quiet=True)
    src, dst = full.parent, tmp_path / "resumed" / "reward"
    dst.mkdir(parents=True)
    for name in ("recipe.toml", "tokenizer", "step-000008"):
        (shutil.copytree if (src / name).is_dir() else shutil.copyfile)(src / name, dst / name)
    (dst / "latest").write_text("step-000008\n")
    run(load_recipe(p, RewardRecipe, [*common, f'run.out_dir="{tmp_path / "resumed"}"']), resume=True, force=True,
        quiet=True)
    a, b = ck.open_checkpoint(src / "step-000012").extra, ck.open_checkpoint(dst / "step-000012").extra
    assert a["reward_mean"] is not None and a["eval_step"] == 8
    assert (b["reward_mean"], b["reward_std"], b["eval_step"]) == (a["reward_mean"], a["reward_std"], 8)
    early = ck.open_checkpoint(src / "step-000004").extra
    assert early["reward_mean"] is None and early["eval"] == {}


def test_lm_coef_keeps_the_backbone_predicting_the_chosen_replies(tmp_path, base):
    """reward.lm_coef: the backbone, read through its (tied) lm_head, learns the chosen replies: their next-token
    loss falls well below the run without it. On an untied parent a frozen copy of its lm_head is used and not
    saved: the checkpoint is still the backbone without lm_head plus the scalar head, and a resume is exact."""
    from safetensors.torch import load_file

    from llmfs.align.reward import load_reward_model
    from llmfs.align.reward_losses import reply_lm_loss
    from llmfs.data.preference import build_pairs, chosen_reply_targets, pair_batch

    def reply_loss(final: Path) -> float:
        model, tok, _ = load_reward_model(final)
        records = [json.loads(line) for line in (tmp_path / "valid.jsonl").read_text().splitlines()]
        pairs, _ = build_pairs(records, tok, 32, source="v")
        ids, _, _ = pair_batch(pairs, 0)
        with torch.no_grad():
            hidden = model.backbone(ids[:len(pairs)], return_hidden=True, return_logits=False).hidden
            return float(reply_lm_loss(hidden, model.backbone.embed_tokens.weight,
                                       chosen_reply_targets(pairs, ids.shape[1])))

    p = recipe_file(tmp_path, base)
    common = ["train.eval_every=0", "eval.baseline=false", "log.every=1"]
    with_lm = run(load_recipe(p, RewardRecipe, [*common, "reward.lm_coef=1.0"]), quiet=True)
    without = run(load_recipe(p, RewardRecipe, [*common, 'run.name="plain"']), quiet=True)
    assert reply_loss(with_lm) < 0.5 * reply_loss(without)

    untied, net = tiny_parent(tmp_path / "untied", tied=False)
    p = recipe_file(tmp_path / "u", untied)
    common = ["train.max_steps=14", *common, "reward.lm_coef=1.0"]
    full = assert_resume_is_exact(p, common, tmp_path / "resumed")
    assert not any("lm_head" in k for k in load_file(str(full / ck.MODEL_FILE)))


def test_lm_coef_is_a_mean_over_the_global_batch_whatever_the_accumulation(tmp_path, base):
    """Chosen replies of different lengths: lm_coef's term averages over every reply token of the batch, so 4
    micro-batches of 2 pairs take the step one batch of 8 takes (the same loss and weights, to rounding), not a
    mean of per-micro-batch means."""
    from safetensors.torch import load_file

    rng = random.Random(0)
    train = tmp_path / "varied.jsonl"
    with open(train, "w", encoding="utf-8") as f:
        for _ in range(64):
            w, other = rng.sample(WORDS, 2)
            f.write(json.dumps({"prompt": f"say {w}", "chosen": " ".join([w] * rng.randint(1, 5)),
                                "rejected": other}) + "\n")
    p = recipe_file(tmp_path, base, train)
    common = ["train.max_steps=3", "train.eval_every=0", "eval.baseline=false", "log.every=1",
              "reward.lm_coef=1.0", "train.save_every=0"]
    one = run(load_recipe(p, RewardRecipe, [*common, 'run.name="one"']), quiet=True)
    four = run(load_recipe(p, RewardRecipe, [*common, 'run.name="four"', "data.micro_batch_size=2"]), quiet=True)
    assert [r["loss"] for r in rows(four.parent)] == pytest.approx([r["loss"] for r in rows(one.parent)], abs=1e-5)
    a, b = load_file(str(one / ck.MODEL_FILE)), load_file(str(four / ck.MODEL_FILE))
    # not the score head's bias: the pairwise loss depends on r_chosen - r_rejected only, so its gradient is 0 up
    # to rounding, which AdamW's normalisation turns into steps of +-lr either way
    for k in a.keys() - {"head.score.bias"}:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)


def test_likelihood_coef_learns_scores_and_resumes_exactly(tmp_path, base):
    """reward.likelihood_coef: the run learns the pairs, the checkpoint records the coefficient and scores with the
    likelihood term (what the trainer evaluated: the stored held-out reward mean is reproduced by `score`); on an
    untied parent the reward model keeps its lm_head (saved, trained) and a resume is exact."""
    from safetensors.torch import load_file

    from llmfs.align.reward import load_reward_model, score

    p = recipe_file(tmp_path, base)
    final = run(load_recipe(p, RewardRecipe, ["reward.likelihood_coef=1.0", "reward.lm_coef=1.0"]), quiet=True)
    evals = rows(final.parent, "eval")
    assert evals[-1]["accuracy"] >= 0.8 > evals[0]["accuracy"]
    model, tok, ckpt = load_reward_model(final)
    assert ckpt.extra["likelihood_coef"] == 1.0 and model.likelihood_coef == 1.0
    records = [json.loads(line) for line in (tmp_path / "valid.jsonl").read_text().splitlines()]
    prompts = [r["prompt"] for r in records] * 2
    rewards = score(model, tok, prompts, [r["chosen"] for r in records] + [r["rejected"] for r in records])
    assert float(rewards.mean()) == pytest.approx(ckpt.extra["reward_mean"], abs=1e-4)

    untied, net = tiny_parent(tmp_path / "untied", tied=False)
    common = ["train.max_steps=14", "train.eval_every=0", "eval.baseline=false", "log.every=1",
              "reward.likelihood_coef=1.0", "reward.lm_coef=1.0"]
    full = assert_resume_is_exact(recipe_file(tmp_path / "u", untied), common, tmp_path / "resumed")
    head = load_file(str(full / ck.MODEL_FILE))["lm_head.weight"]
    assert not torch.equal(head, net.lm_head.weight.detach())  # trained with the rest


def test_metrics_by_hand():
    chosen, rejected = torch.tensor([2.0, 0.0, 1.0]), torch.tensor([1.0, 1.0, 1.0])
    m = pair_metrics(chosen, rejected, ["x", "x", "y"], torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    assert m["accuracy"] == pytest.approx(1 / 3)  # the tie counts as wrong
    assert m["accuracy/x"] == 0.5 and m["accuracy/y"] == 0.0
    assert m["margin"] == pytest.approx(0.0)
    assert m["reward_mean"] == pytest.approx(1.0) and m["reward_std"] == pytest.approx((2 / 6) ** 0.5)
    assert pearson(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 6.0])) == pytest.approx(1.0)
    assert pearson(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    assert pearson(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 2.0])) == 0.0


def test_bad_inputs_are_one_line_errors(tmp_path, base, capsys):
    bad = write_pairs(tmp_path / "bad.jsonl", 4, 0)
    with open(bad, "a", encoding="utf-8") as f:
        f.write(json.dumps({"prompt": [{"role": "assistant", "content": "hi"}], "chosen": "a", "rejected": "b"})
                + "\n")
    p = recipe_file(tmp_path, base, train=bad)
    assert main(["reward", "train", str(p), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "record 4" in err and "turns must alternate" in err and err.count("\n") == 1

    (tmp_path / "nofield.jsonl").write_text(json.dumps({"prompt": "x", "chosen": "y"}) + "\n")
    assert main(["reward", "train", str(recipe_file(tmp_path, base, tmp_path / "nofield.jsonl")), "--quiet"]) == 2
    assert "no 'rejected' field" in capsys.readouterr().err

    assert main(["reward", "train", str(p), "--quiet", "--set", "data.seq_len=64"]) == 2
    assert "longer than the model's context" in capsys.readouterr().err

    assert main(["reward", "score", str(base), "--prompt", "a", "--response", "b"]) == 2
    assert "is a 'causal_lm' checkpoint" in capsys.readouterr().err
    assert main(["reward", "score", str(base), "--prompt", "a"]) == 2
    assert "give --prompt TEXT and --response TEXT, or --file" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="margin_field"):
        load_recipe(p, RewardRecipe, ['reward.margin_field="strength"'])
