#!/usr/bin/env bash
# Instruction, preference and RL-prompt datasets from the Hugging Face hub, loaded the way the later stages will
# load them (llmfs.data.records.iter_records): each run checks that the records hold the fields a stage needs,
# mapping the dataset's own column names with --field, then prints corpus statistics.
#
# The stage commands (llmfs sft / reward / ppo / grpo) come later; until then this script only loads the data.
# Needs network access to the hub; offline, each command stops with a one-line error that says to pass a local
# .jsonl / .parquet file instead. LLMFS is the command to call (default: llmfs).
set -euo pipefail

LLMFS=${LLMFS:-llmfs}
CACHE=${1:-.llmfs_cache/datasets}

# SFT: conversations as a `messages` list of {role, content}.
$LLMFS data stats HuggingFaceH4/no_robots --split test --kind chat --cache-dir "$CACHE"

# Reward model: prompt, chosen, rejected; this dataset calls its prompt column "question".
$LLMFS data stats Intel/orca_dpo_pairs --kind preference --field prompt=question --cache-dir "$CACHE"

# RL with a verifiable answer: prompt (+ answer). gsm8k has two configurations; `?config=main` picks one.
$LLMFS data stats "openai/gsm8k?config=main" --split test --kind prompt --field prompt=question \
    --cache-dir "$CACHE"
