#!/usr/bin/env bash
# PPO, GRPO and REINFORCE from the same SFT checkpoint on the same verifiable task (built-in arithmetic, exact
# match + format rewards), the same number of sampled replies per step, then one plot of reward and held-out
# greedy accuracy against replies sampled, so the three can be compared at equal sample cost.
#
#   examples/rl_compare.sh [SFT] [OUT]     SFT defaults to runs/sft (`llmfs sft recipes/sft.toml`), OUT to runs/rl
#   STEPS=50 examples/rl_compare.sh        fewer iterations (default 100)
#
# REINFORCE here is GRPO with one reply per prompt, no advantage normalisation and one on-policy update per
# rollout (so the ratio is 1 and the clip never binds); PPO uses the rule rewards instead of a reward model and
# learns a value baseline. The plot needs `pip install 'llmfs[plot]'`. LLMFS is the command (default: llmfs).
set -euo pipefail

LLMFS=${LLMFS:-llmfs}
PYTHON=${PYTHON:-python}
SFT=${1:-runs/sft}
OUT=${2:-runs/rl}
STEPS=${STEPS:-100}
TASK='data.train="builtin:arithmetic?level=2&n=4000"'
REWARDS='{exact_match = 1.0, format = 0.1}'
COMMON=(--set "init_from=\"$SFT\"" --set "run.out_dir=\"$OUT\"" --set "train.max_steps=$STEPS" --set "$TASK"
        --set "train.eval_every=10")

# 8 prompts x 8 replies = 64 replies per step for each method
$LLMFS grpo recipes/grpo.toml "${COMMON[@]}" --set run.name=grpo --set "grpo.rewards=$REWARDS" \
    --set data.prompts_per_step=8
$LLMFS grpo recipes/grpo.toml "${COMMON[@]}" --set run.name=reinforce --set "grpo.rewards=$REWARDS" \
    --set grpo.group_size=1 --set 'grpo.scale="none"' --set grpo.epochs=1 --set data.prompts_per_step=64 \
    --set grpo.minibatch_size=64
$LLMFS ppo recipes/ppo.toml "${COMMON[@]}" --set run.name=ppo --set 'reward_model=""' --set "ppo.rewards=$REWARDS" \
    --set 'ppo.value_model="shared"' --set data.prompts_per_step=64 --set ppo.max_new_tokens=40

$PYTHON examples/rl_compare_plot.py "$OUT/grpo" "$OUT/reinforce" "$OUT/ppo" --out "$OUT/rl_compare.png"
