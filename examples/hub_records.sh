#!/usr/bin/env bash
# Instruction, preference and RL-prompt datasets from the Hugging Face hub, loaded the way the later stages
# load them (llmfs.data.records.iter_records): each run checks that the records hold the fields a stage needs,
# mapping the dataset's own column names with --field, then prints corpus statistics. Then SFT and the reward
# model on the first two, from the small model of recipes/small.toml (run `llmfs pretrain recipes/small.toml`
# first; STAGE_STEPS sets the steps of each stage, default 300).
#
# Needs network access to the hub; offline, each command stops with a one-line error that says to pass a local
# .jsonl / .parquet file instead. LLMFS is the command to call (default: llmfs).
set -euo pipefail

LLMFS=${LLMFS:-llmfs}
CACHE=${1:-.llmfs_cache/datasets}
STAGE_STEPS=${STAGE_STEPS:-300}

# SFT: conversations as a `messages` list of {role, content}.
$LLMFS data stats HuggingFaceH4/no_robots --split test --kind chat --cache-dir "$CACHE"

# Reward model: prompt, chosen, rejected; this dataset calls its prompt column "question".
$LLMFS data stats Intel/orca_dpo_pairs --kind preference --field prompt=question --cache-dir "$CACHE"

# RL with a verifiable answer: prompt (+ answer). gsm8k has two configurations; `?config=main` picks one.
$LLMFS data stats "openai/gsm8k?config=main" --split test --kind prompt --field prompt=question \
    --cache-dir "$CACHE"

# The stages on the hub data (the small model's context is 128 tokens: longer conversations are cut or dropped,
# and counted). gsm8k's answers end with a worked solution and "#### N", not the `Answer: N` line the built-in
# exact_match reward reads, so it is measured here but not trained on.
$LLMFS sft recipes/sft.toml --set run.name=sft-no-robots --set 'data.train="HuggingFaceH4/no_robots"' \
    --set "data.cache_dir=\"$CACHE\"" --set "train.max_steps=$STAGE_STEPS"
$LLMFS reward train recipes/reward.toml --set run.name=reward-orca --set 'init_from="runs/sft-no-robots"' \
    --set 'data.train="Intel/orca_dpo_pairs"' --set 'data.fields={prompt="question"}' \
    --set "data.cache_dir=\"$CACHE\"" --set "train.max_steps=$STAGE_STEPS"
