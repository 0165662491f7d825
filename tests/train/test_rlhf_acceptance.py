"""The acceptance runs of issues #9 (`llmfs reward`), #10 (`llmfs ppo`) and #11 (`llmfs grpo`) on the README's
recipes, CPU only: pretrain recipes/small.toml -> recipes/sft.toml -> recipes/reward.toml -> recipes/ppo.toml, and
recipes/grpo.toml from the same SFT model, each stage reading the checkpoint the previous one wrote. Slow: 62 minutes
on 2 CPU cores (2026-12-05: pretrain 4, SFT 13, reward 12, PPO 5, GRPO 27). The chain is built once per module and
the tests read it.

Run on 2026-12-05 on the recipes as shipped (session 10's), every figure equal to the stage-by-stage runs of
2026-11-30 (docs/bench/rlhf.md):
- SFT (`closers=0.1`, 6400 steps): held-out exact match 0.95.
- #9: 99.97% overall, wrong_answer 99.6%, every other kind (and `curt`) 100% (3000 held-out pairs), with the
  reward model reading the reply's likelihood (`likelihood_coef = 2.0`).
- #10: PPO 0.867 -> 2.305 in 100 iterations, +1.44 = 1.42 std of the SFT samples' scores (1.015), KL at most 2.4
  (target 6). The std is that of the SFT model's own samples (the test's docstring says why); over the pairs'
  replies it is 2.48 (0.58 of it).
- #11: recipes/grpo.toml trains on two-step sums and differences (`builtin:arithmetic?level=4&ops=add,sub`),
  where this SFT model starts at 0.535; 300 iterations take it to 0.81.

Rerun 2026-12-05 evening with recipes/small.toml at `matmul_precision = "medium"` (bf16-input matmuls; 86
minutes with the machine slowed by other load): SFT exact match 0.945, #9 99.97%, PPO passed, but the SFT model
started GRPO at 0.780 (outside the 10-60% window; GRPO took it to 0.905-0.925), so small.toml went back to the
default "high". A harder GRPO task would let the chain use "medium"; not done.

Rerun 2026-12-06 on a 2-core AMD EPYC VM (the runs above were on an Intel Xeon with AMX), small.toml at "high",
90 minutes: SFT exact match 0.955, #9 passed, #10 passed (0.847 -> 2.306), #11 failed its window again: the SFT
model started at 0.880 (-> 0.92 after 300 iterations). The pretraining code computes the same bits as the
validated commit (9e4b8e2; checked on a short run, one thread), so it is most likely the CPU: another GEMM kernel, other rounding, another
SFT model, and this task's starting point swings between 0.535 and 0.88 with it. The whole of level 4 (with
products) starts at 0.555 on the AMD model but GRPO moved it only to 0.595 in 150 iterations (stopped): not a
replacement as it stands. docs/bench/rlhf.md has the figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llmfs import checkpoint as ck
from llmfs.config import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict[str, Path]:
    """The final checkpoints of pretrain, sft and reward, all on the recipes as shipped."""
    from llmfs.train.pretrain import PretrainRecipe
    from llmfs.train.pretrain import run as pretrain
    from llmfs.train.reward import RewardRecipe
    from llmfs.train.reward import run as reward
    from llmfs.train.sft import SFTRecipe
    from llmfs.train.sft import run as sft

    out = tmp_path_factory.mktemp("chain")
    at = [f'run.out_dir="{out}"']
    small = pretrain(load_recipe(RECIPES / "small.toml", PretrainRecipe, at), quiet=True)
    chat = sft(load_recipe(RECIPES / "sft.toml", SFTRecipe, [*at, f'init_from="{small}"']), quiet=True)
    rm = reward(load_recipe(RECIPES / "reward.toml", RewardRecipe, [*at, f'init_from="{chat}"']), quiet=True)
    return {"out": out, "sft": chat, "reward": rm}


@pytest.mark.slow
def test_reward_model_ranks_held_out_pairs(chain):
    """#9: held-out pairwise accuracy on builtin:preferences >= 90%, and >= 80% for every defect kind (the six
    defects, and `curt`, the closer-less replies recipes/reward.toml's `courtesy` adds)."""
    from llmfs.data.builtin.preferences import DEFECTS

    result = ck.open_checkpoint(chain["reward"]).extra["eval"]
    per_defect = {k: v for k, v in result.items() if k.startswith("accuracy/")}
    assert set(per_defect) == {f"accuracy/{d}" for d in (*DEFECTS, "curt")}, result
    assert result["accuracy"] >= 0.9, result
    assert min(per_defect.values()) >= 0.8, result


@pytest.mark.slow
def test_ppo_raises_the_reward_model_score_within_the_kl_target(chain):
    """#10: from the SFT model, the mean reward-model score of samples on held-out prompts rises by at least one
    reward standard deviation while the KL to the reference stays under the recipe's kl_target. The std is that
    of the reward-model scores of the SFT model's own samples on those prompts (PPO's evaluation at step 0): the
    spread of the quantity measured, and the unit Ziegler et al. (2019) normalise the reward to before RL. The
    std over the reward checkpoint's held-out pairs, mostly their chosen/rejected gap, is reported beside it."""
    import json

    from llmfs.train.ppo import PPORecipe
    from llmfs.train.ppo import run as ppo

    recipe = load_recipe(RECIPES / "ppo.toml", PPORecipe, [
        f'run.out_dir="{chain["out"]}"', f'init_from="{chain["sft"]}"', f'reward_model="{chain["reward"]}"'])
    final = ppo(recipe, quiet=True)
    evals = [r for r in map(json.loads, (final.parent / "metrics.jsonl").read_text().splitlines())
             if r["kind"] == "eval"]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == recipe.train.max_steps
    rise = evals[-1]["eval_reward_model"] - evals[0]["eval_reward_model"]
    std = evals[0]["eval_reward_model_std"]
    pairs_std = ck.open_checkpoint(chain["reward"]).extra["reward_std"]
    assert max(r["eval_kl"] for r in evals) < recipe.ppo.kl_target, evals
    assert rise >= std, (f"reward-model score rose {rise:+.3f}, less than one std of the SFT samples' scores "
                         f"{std:.3f} (pairs' std {pairs_std:.3f}): {evals}")


@pytest.mark.slow
def test_grpo_raises_held_out_arithmetic_accuracy_by_20_points(chain):
    """#11: from the SFT model, held-out greedy accuracy on builtin:arithmetic at the recipe's level (where the
    SFT model starts between 10% and 60%: checked) rises by at least 20 points under recipes/grpo.toml."""
    import json

    from llmfs.train.grpo import GRPORecipe
    from llmfs.train.grpo import run as grpo

    recipe = load_recipe(RECIPES / "grpo.toml", GRPORecipe, [
        f'run.out_dir="{chain["out"]}"', f'init_from="{chain["sft"]}"'])
    final = grpo(recipe, quiet=True)
    evals = [r for r in map(json.loads, (final.parent / "metrics.jsonl").read_text().splitlines())
             if r["kind"] == "eval"]
    start, end = evals[0]["accuracy"], evals[-1]["accuracy"]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == recipe.train.max_steps
    assert 0.10 <= start <= 0.60, f"the SFT model starts at {start:.3f}, outside the 10-60% window"
    assert end >= start + 0.20, f"held-out accuracy {start:.3f} -> {end:.3f}, less than +0.20"
