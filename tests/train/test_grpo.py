"""`llmfs grpo` on a tiny random chat model with a reward it can find by chance: the clip works on later
minibatches, reward rises, exact resume, reward errors counted, REINFORCE as a special case, bad recipes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from llmfs import checkpoint as ck
from llmfs.align import rewards as R
from llmfs.cli import main
from llmfs.config import load_recipe
from llmfs.tokenizer.byte import ByteTokenizer
from llmfs.tokenizer.chat import with_chat_tokens
from llmfs.train.grpo import GRPORecipe, run
from llmfs.train.rl_common import RewardScorer

from ..infer.test_chat import make_ckpt

RECIPE = """
init_from = "{base}"

[run]
name = "grpo"
out_dir = "{out}"

[data]
train = "{train}"
prompts_per_step = 4
eval_prompts = 4

[grpo]
group_size = 8
max_new_tokens = 8
rewards = {{ has_e = 1.0 }}
epochs = 2
minibatch_size = 8

[optim]
lr = 3e-3

[train]
max_steps = 12
eval_every = 0
save_every = 6

[log]
console = "none"
"""


def has_e(reply, example) -> float:
    """1 when the reply holds the letter e: a random byte model finds it in about 1 of 4 replies of 8 tokens."""
    return float("e" in reply)


@pytest.fixture(autouse=True)
def test_rewards(monkeypatch):
    monkeypatch.setitem(R.REWARDS, "has_e", has_e)

    def flaky(reply, example):
        if "a" in reply:
            raise ValueError("cannot parse")
        return 0.0

    monkeypatch.setitem(R.REWARDS, "flaky", flaky)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return make_ckpt(tmp_path_factory.mktemp("policy"), with_chat_tokens(ByteTokenizer()), max_seq_len=64)[0]


def recipe(tmp_path: Path, base: Path, *overrides: str) -> GRPORecipe:
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"write some letters {i}", "answer": "e"}) + "\n"
                            for i in range(40)))
    p = tmp_path / "grpo.toml"
    p.write_text(RECIPE.format(base=base, out=tmp_path / "runs", train=data))
    return load_recipe(p, GRPORecipe, overrides)


def rows(run_dir: Path, kind: str = "train") -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, base):
    """One 12-step run shared by the tests that read it (with the test rewards registered for its duration)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(R.REWARDS, "has_e", has_e)
        tmp = tmp_path_factory.mktemp("full")
        return tmp, run(recipe(tmp, base), quiet=True)


def test_grpo_clips_on_later_minibatches_and_raises_the_reward(full_run):
    _, final = full_run
    train = rows(final.parent)
    assert len(train) == 12
    # the first minibatch of each step has ratio 1; the second epoch sees a moved policy, and the clip binds
    assert all(r["ratio_dev"] > 0 for r in train if r["zero_variance_groups"] < 1)
    assert max(r["clip_fraction_last_epoch"] for r in train) > 0
    assert all(r["rollout_tok_per_s"] > 0 and r["optimise_tok_per_s"] > 0 for r in train)
    first, last = sum(r["reward"] for r in train[:4]) / 4, sum(r["reward"] for r in train[-4:]) / 4
    assert last > first + 0.2
    ckpt = ck.open_checkpoint(final)
    assert ckpt.extra["stage"] == "grpo" and ck.TEMPLATE_FILE in ckpt.files
    assert {"accuracy", "stop_rate"} <= rows(final.parent, "eval")[-1].keys()
    assert all(0 < r["entropy"] < 6 for r in train)  # nats over a 260-id vocabulary: at most ln 260 = 5.56


def test_a_reward_model_adds_its_score_to_the_rule_rewards(tmp_path, base):
    from .test_ppo import make_reward_ckpt

    rm = make_reward_ckpt(tmp_path / "r", with_chat_tokens(ByteTokenizer()))
    overrides = [f'reward_model="{rm}"', "train.max_steps=1", "train.save_every=0"]
    only_rm = run(recipe(tmp_path / "a", base, *overrides, "grpo.rewards={}"), quiet=True)
    both = run(recipe(tmp_path / "b", base, *overrides, "grpo.reward_weight=0.5"), quiet=True)
    (a,) = rows(only_rm.parent)
    (b,) = rows(both.parent)
    assert a["reward"] == pytest.approx(a["reward_model"], abs=1e-6)  # the score alone, unnormalised
    # the same seed samples the same replies: rule reward (has_e) + 0.5 x the same reward-model score
    assert b["reward_model"] == pytest.approx(a["reward_model"], abs=1e-6)
    assert 0 <= b["reward"] - 0.5 * b["reward_model"] <= 1  # what is left is the mean of has_e, in [0, 1]


def test_stop_and_resume_is_bitwise_identical(tmp_path, base, full_run):
    first_dir, full = full_run
    src, dst = full.parent, tmp_path / "resumed" / "grpo"
    dst.mkdir(parents=True)
    for name in ("recipe.toml", "step-000006"):
        (shutil.copytree if (src / name).is_dir() else shutil.copyfile)(src / name, dst / name)
    (dst / "latest").write_text("step-000006\n")
    again = run(recipe(first_dir, base, f'run.out_dir="{tmp_path / "resumed"}"'), resume=True, force=True,
                quiet=True)  # the same prompts file as the full run
    assert [r["reward"] for r in rows(src) if r["step"] > 6] == [r["reward"] for r in rows(dst)]
    assert [r["loss"] for r in rows(src) if r["step"] > 6] == [r["loss"] for r in rows(dst)]
    from safetensors.torch import load_file

    a, b = load_file(str(full / ck.MODEL_FILE)), load_file(str(again / ck.MODEL_FILE))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)


def test_fp16_loss_scaling_reaches_the_rl_updates(tmp_path, base, monkeypatch):
    """Under fp16 (CUDA) every minibatch update goes through the run's GradScaler, as in pretraining; a CPU one
    here, growing its scale after every finite update: 2 steps x 2 epochs x 4 minibatches = 16 growths, saved
    for resume."""
    from llmfs.runtime import Runtime

    monkeypatch.setattr(Runtime, "grad_scaler", lambda self: torch.amp.GradScaler("cpu", init_scale=2.0,
                                                                                  growth_interval=1))
    final = run(recipe(tmp_path, base, "train.max_steps=2", "train.save_every=0"), quiet=True)
    state = json.loads((final / ck.TRAINER_FILE).read_text())["grad_scaler"]
    assert state["scale"] == 2.0 ** 17


def test_reinforce_is_grpo_with_one_sample_and_one_pass(tmp_path, base):
    final = run(recipe(tmp_path, base, "grpo.group_size=1", 'grpo.scale="none"', "grpo.epochs=1",
                       "grpo.minibatch_size=4", "train.max_steps=3", "train.save_every=0"), quiet=True)
    train = rows(final.parent)
    assert all(r["clip_fraction"] == 0 and r["ratio_dev"] < 1e-5 for r in train)  # on-policy: ratio stays 1
    # no baseline: each reply's advantage is its own reward (has_e: 0 or 1), so the loss, -(mean over reply
    # tokens of advantage x ratio 1), is negative exactly when some reply scored (a group of one used to centre
    # every advantage to 0: nothing was learned)
    assert any(r["reward"] > 0 for r in train)
    assert all((r["loss"] < 0) == (r["reward"] > 0) and r["loss"] <= 0 for r in train)


def test_the_policy_runs_without_dropout(tmp_path):
    """A policy trained with dropout: GRPO turns it off (the sampling policy's log-probs and the updated ones
    come from one network), so one on-policy pass keeps the ratio at 1 exactly, as without dropout."""
    dropped = make_ckpt(tmp_path / "policy", with_chat_tokens(ByteTokenizer()), max_seq_len=64, dropout=0.3)[0]
    final = run(recipe(tmp_path, dropped, "grpo.group_size=1", 'grpo.scale="none"', "grpo.epochs=1",
                       "grpo.minibatch_size=4", "train.max_steps=2", "train.save_every=0"), quiet=True)
    assert all(r["ratio_dev"] < 1e-5 for r in rows(final.parent))


def test_reward_errors_score_zero_and_are_counted():
    scorer = RewardScorer({"flaky": 1.0, "has_e": 0.5})
    scores = scorer(["bbb", "abc", "eee"], [{}, {}, {}])
    assert scores.tolist() == [0.0, 0.0, 0.5]
    assert scorer.errors == 1 and "ValueError: cannot parse" in scorer.first_error


def test_bad_recipes_are_refused_before_any_rollout(tmp_path, base, capsys):
    r = recipe(tmp_path, base)
    p = tmp_path / "grpo.toml"
    bad = tmp_path / "bad.toml"
    bad.write_text(p.read_text().replace("has_e", "no_such_reward"))
    assert main(["grpo", str(bad)]) == 2
    assert "unknown reward" in capsys.readouterr().err
    plain, _ = make_ckpt(tmp_path / "plain", ByteTokenizer())
    bad.write_text(p.read_text().replace(str(base), str(plain)))
    assert main(["grpo", str(bad)]) == 2
    assert "base model" in capsys.readouterr().err
    bad.write_text(p.read_text().replace("rewards = { has_e = 1.0 }", "rewards = {}"))
    assert main(["grpo", str(bad)]) == 2
    assert "grpo.rewards: needs at least one reward, e.g. {exact_match = 1.0}, or a reward_model" in \
        capsys.readouterr().err
    bad.write_text(p.read_text().replace("group_size = 8", "group_size = 1"))
    assert main(["grpo", str(bad)]) == 2
    assert "grpo.scale: 'group' divides by the spread of each prompt's group, and group_size = 1 has none" in \
        capsys.readouterr().err
    assert r.grpo.group_size == 8


def record_forwards(monkeypatch) -> list[torch.Tensor | None]:
    """Patch Transformer.forward to record the token_mask of every forward without a KV cache (the rollout
    scoring and the updates; sampling runs with a cache)."""
    from llmfs.model.transformer import Transformer

    masks = []
    forward = Transformer.forward

    def spy(self, input_ids, **kw):
        if kw.get("cache") is None:
            masks.append(kw.get("token_mask"))
        return forward(self, input_ids, **kw)

    monkeypatch.setattr(Transformer, "forward", spy)
    return masks


def test_rollout_padding_reaches_every_scoring_and_update_forward(tmp_path, base, monkeypatch):
    """The old, reference and updated log-probs all come from forwards told where the rollout's padding is
    (`Rollout.keep`), so an MoE policy routes none of it in any of them (what the mask does to an MoE forward:
    tests/align/test_rollout.py)."""
    masks = record_forwards(monkeypatch)
    run(recipe(tmp_path, base, "grpo.kl_coef=0.05", "train.max_steps=1", "train.save_every=0"), quiet=True)
    # old + reference log-probs (4 x 8 rows in minibatches of 8: 4 forwards each) and 2 epochs x 4 updates
    assert len(masks) == 4 + 4 + 8
    assert all(m is not None for m in masks)
    assert any(not bool(m.all()) for m in masks)  # replies of different lengths: some rows are padded
