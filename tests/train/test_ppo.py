"""`llmfs ppo` on a tiny random chat model with a rule reward: the clip binds on later epochs, the value model
travels in its own file, exact resume, both value-model layouts, running statistics, bad recipes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from llmfs import checkpoint as ck
from llmfs.align import rewards as R
from llmfs.align.running_stats import RunningStats
from llmfs.cli import main
from llmfs.config import load_recipe
from llmfs.tokenizer.byte import ByteTokenizer
from llmfs.tokenizer.chat import with_chat_tokens
from llmfs.train.ppo import PPORecipe, run

from ..infer.test_chat import make_ckpt
from .test_grpo import has_e

RECIPE = """
init_from = "{base}"

[run]
name = "ppo"
out_dir = "{out}"

[data]
train = "{train}"
prompts_per_step = 16
eval_prompts = 4

[ppo]
max_new_tokens = 8
rewards = {{ has_e = 1.0 }}
epochs = 3
minibatch_size = 8
kl_coef = 0.05

[optim]
lr = 3e-3

[train]
max_steps = 4
eval_every = 0
save_every = 2

[log]
console = "none"
"""


@pytest.fixture(autouse=True)
def test_rewards(monkeypatch):
    monkeypatch.setitem(R.REWARDS, "has_e", has_e)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return make_ckpt(tmp_path_factory.mktemp("policy"), with_chat_tokens(ByteTokenizer()), max_seq_len=64)[0]


def recipe(tmp_path: Path, base: Path, *overrides: str) -> PPORecipe:
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"write some letters {i}"}) + "\n" for i in range(40)))
    p = tmp_path / "ppo.toml"
    p.write_text(RECIPE.format(base=base, out=tmp_path / "runs", train=data))
    return load_recipe(p, PPORecipe, overrides)


def rows(run_dir: Path, kind: str = "train") -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, base):
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(R.REWARDS, "has_e", has_e)
        tmp = tmp_path_factory.mktemp("full")
        return tmp, run(recipe(tmp, base), quiet=True)


def test_later_epochs_move_the_ratio_and_the_clip_binds(full_run):
    _, final = full_run
    train = rows(final.parent)
    assert len(train) == 4
    assert all(r["ratio_dev"] > 0 and r["epochs"] == 3 for r in train)
    assert max(r["clip_fraction_last_epoch"] for r in train) > 0
    assert {"kl", "kl_coef", "value_loss", "explained_variance", "entropy", "approx_kl", "reward"} <= train[0].keys()
    ckpt = ck.open_checkpoint(final)
    assert "value.safetensors" in ckpt.files and ckpt.extra["stage"] == "ppo"
    from llmfs.infer.load import load_model

    load_model(final)  # the policy alone: what generate and chat read


def test_stop_and_resume_is_bitwise_identical(tmp_path, base, full_run):
    first_dir, full = full_run
    src, dst = full.parent, tmp_path / "resumed" / "ppo"
    dst.mkdir(parents=True)
    for name in ("recipe.toml", "step-000002"):
        (shutil.copytree if (src / name).is_dir() else shutil.copyfile)(src / name, dst / name)
    (dst / "latest").write_text("step-000002\n")
    again = run(recipe(first_dir, base, f'run.out_dir="{tmp_path / "resumed"}"'), resume=True, force=True,
                quiet=True)
    assert [r["loss"] for r in rows(src) if r["step"] > 2] == [r["loss"] for r in rows(dst)]
    from safetensors.torch import load_file

    for f in (ck.MODEL_FILE, "value.safetensors"):
        a, b = load_file(str(full / f)), load_file(str(again / f))
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)


def test_separate_value_model_and_early_stop(tmp_path, base):
    final = run(recipe(tmp_path, base, 'ppo.value_model="separate"', "ppo.max_approx_kl=1e-9", "train.max_steps=2",
                       "train.save_every=0"), quiet=True)
    train = rows(final.parent)
    assert all(r["epochs"] == 1 for r in train)  # stopped after the first pass: the policy moved past the bound
    from safetensors.torch import load_file

    assert any(k.startswith("value_backbone.") for k in load_file(str(final / "value.safetensors")))


def test_fp16_loss_scaling_reaches_the_ppo_updates(tmp_path, base, monkeypatch):
    """Every PPO minibatch update goes through the run's GradScaler (fp16 on CUDA; a CPU one here, growing after
    each finite update): 1 step x 3 epochs x 2 minibatches = 6 growths."""
    from llmfs.runtime import Runtime

    monkeypatch.setattr(Runtime, "grad_scaler", lambda self: torch.amp.GradScaler("cpu", init_scale=2.0,
                                                                                  growth_interval=1))
    final = run(recipe(tmp_path, base, "train.max_steps=1", "train.save_every=0", "ppo.max_approx_kl=0"),
                quiet=True)
    assert json.loads((final / ck.TRAINER_FILE).read_text())["grad_scaler"]["scale"] == 2.0 ** 7


def test_the_policy_and_critic_run_without_dropout(tmp_path):
    """A policy trained with dropout: PPO turns it off, so the rollout's log-probs (no gradient) and the first
    update's (with gradient) come from one network: one epoch of one minibatch keeps the ratio at 1."""
    dropped = make_ckpt(tmp_path / "policy", with_chat_tokens(ByteTokenizer()), max_seq_len=64, dropout=0.3)[0]
    final = run(recipe(tmp_path, dropped, "ppo.epochs=1", "ppo.minibatch_size=16", "train.max_steps=2",
                       "train.save_every=0"), quiet=True)
    assert all(r["ratio_dev"] < 1e-5 for r in rows(final.parent))


def test_running_stats_merge_batches_exactly():
    s = RunningStats(mean=1.0, var=4.0, count=2.0)  # as if it had seen [-1, 3]
    s.update(torch.tensor([2.0, 6.0, 1.0]))
    everything = torch.tensor([-1.0, 3.0, 2.0, 6.0, 1.0])
    assert s.mean == pytest.approx(float(everything.mean()))
    assert s.var == pytest.approx(float(everything.var(unbiased=False)))
    assert s.normalise(torch.tensor([s.mean])).item() == pytest.approx(0.0)


def test_bad_recipes_are_refused_before_any_rollout(tmp_path, base, capsys):
    recipe(tmp_path, base)
    p = tmp_path / "ppo.toml"
    bad = tmp_path / "bad.toml"
    bad.write_text(p.read_text().replace("has_e", "no_such_reward"))
    assert main(["ppo", str(bad)]) == 2
    assert "unknown reward" in capsys.readouterr().err
    bad.write_text(p.read_text().replace("rewards = { has_e = 1.0 }", ""))
    assert main(["ppo", str(bad)]) == 2
    assert "give a reward checkpoint, or rule rewards" in capsys.readouterr().err
    bad.write_text(p.read_text().replace("epochs = 3", 'epochs = 3\nvalue_model = "reward"'))
    assert main(["ppo", str(bad)]) == 2
    assert "ppo.value_model" in capsys.readouterr().err


def make_reward_ckpt(path: Path, tokenizer, mean: float | None = 0.5, std: float | None = 2.0) -> Path:
    import dataclasses

    from llmfs.align.reward import RewardModel
    from llmfs.model.config import ModelConfig
    from llmfs.model.transformer import Transformer
    from llmfs.tokenizer.hf import save

    save(tokenizer, path / "tok")
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, max_seq_len=64, d_model=32, n_layers=1, n_heads=4)
    rm = RewardModel(cfg, backbone=Transformer(cfg, generator=torch.Generator().manual_seed(1)),
                     generator=torch.Generator().manual_seed(2))
    return ck.save(path / "rm", kind="reward", model_config=dataclasses.asdict(cfg), state_dict=rm.state_dict(),
                   tokenizer_json=path / "tok" / "tokenizer.json", extra={"reward_mean": mean, "reward_std": std})


def test_reward_model_scores_and_normalises_the_rollouts(tmp_path, base):
    """With the critic copied from the reward model (value_model = "reward", trained apart from it): its weights
    travel in value.safetensors."""
    rm = make_reward_ckpt(tmp_path / "r", with_chat_tokens(ByteTokenizer()))
    final = run(recipe(tmp_path, base, f'reward_model="{rm}"', "train.max_steps=2", "train.save_every=0",
                       "train.eval_every=2", 'ppo.value_model="reward"'), quiet=True)
    train = rows(final.parent)
    assert all("reward_model" in r for r in train)
    stats = ck.open_checkpoint(final).extra["reward_stats"]
    assert stats["count"] == 100 + 2 * 16  # the reward checkpoint's statistics as 100 samples, then 2 x 16 replies
    evals = rows(final.parent, "eval")[-1]
    table = [r for r in rows(final.parent, "sample") if r["step"] == 2]
    assert 1 < len(table) <= 4 and {"prompt", "reply", "reward_model", "reward"} <= table[0].keys()
    scores = torch.tensor([r["reward_model"] for r in table])
    assert evals["eval_reward_model"] == pytest.approx(float(scores.mean()), abs=1e-5)  # (3 held-out prompts: all in the table)
    assert evals["eval_reward_model_std"] == pytest.approx(float(scores.std()), abs=1e-5)
    from safetensors.torch import load_file

    value = load_file(str(final / "value.safetensors"))
    assert not any(k.startswith("value_backbone.layers.1.") for k in value)  # the reward model's 1 layer, not 2
    assert not torch.equal(value["value_head.score.weight"], load_file(str(rm / ck.MODEL_FILE))["head.score.weight"])


def test_a_reward_model_saved_before_any_evaluation_has_no_statistics_to_start_from(tmp_path, base):
    """A reward step checkpoint written before its first evaluation stores reward_mean / reward_std = null: PPO
    starts its running statistics empty instead of failing on float(None)."""
    rm = make_reward_ckpt(tmp_path / "r", with_chat_tokens(ByteTokenizer()), mean=None, std=None)
    final = run(recipe(tmp_path, base, f'reward_model="{rm}"', "train.max_steps=1", "train.save_every=0"),
                quiet=True)
    assert ck.open_checkpoint(final).extra["reward_stats"]["count"] == 16  # this step's replies only


def test_a_reward_model_with_another_tokenizer_is_refused(tmp_path, base, capsys):
    from llmfs.tokenizer.chat import CHAT_TOKENS

    other = ByteTokenizer(special_tokens=("<|endoftext|>", "<|pad|>", *CHAT_TOKENS))  # other ids for the markers
    rm = make_reward_ckpt(tmp_path / "r", other)
    recipe(tmp_path, base)
    p = tmp_path / "ppo.toml"
    p.write_text(f'reward_model = "{rm}"\n' + p.read_text())
    assert main(["ppo", str(p)]) == 2
    assert "its tokenizer differs from the policy's" in capsys.readouterr().err


def test_rollout_padding_reaches_every_scoring_and_update_forward(tmp_path, base, monkeypatch):
    """Policy, critic (a separate backbone here) and reference are all told where the rollout's padding is
    (`Rollout.keep`) when scoring it, when updating on it and when evaluating: MoE layers route none of it."""
    from .test_grpo import record_forwards

    masks = record_forwards(monkeypatch)
    run(recipe(tmp_path, base, 'ppo.value_model="separate"', "ppo.epochs=1", "train.max_steps=1",
               "train.save_every=0", "train.eval_every=1"), quiet=True)
    # 16 rows in minibatches of 8: scoring (policy, critic, reference) 2 x 3 forwards, one epoch of 2 updates
    # (policy and critic), and two evaluations (before the first step and after it) of the 4 held-out rows:
    # policy, critic, reference each
    assert len(masks) == 6 + 4 + 2 * 3
    assert all(m is not None for m in masks)
    assert any(not bool(m.all()) for m in masks)
