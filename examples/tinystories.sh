#!/usr/bin/env bash
# Pretrain the small modern stack on the real TinyStories (Eldan & Li 2023) from the Hugging Face hub.
# Needs network access to the hub (the `datasets` package streams it); offline, every step stops with a one-line
# error that says to pass a local file instead (see examples/local_text.sh, which runs offline).
#
#   examples/tinystories.sh [OUT [--set KEY=VALUE ...]]
#
# The first run tokenizes the whole train split (2.1M stories, about 1.9 GB of text) into token shards under
# OUT/tinystories/data/ once; later runs and resumes reuse them. `datasets` caches its downloads in
# OUT/tinystories/data/hf_cache (the default for a run; set data.cache_dir to share one cache between runs).
# Further arguments go to `llmfs pretrain`. LLMFS is the command to call (default: llmfs).
set -euo pipefail

OUT=${1:-runs}
shift $(( $# < 1 ? $# : 1 ))
LLMFS=${LLMFS:-llmfs}

# 1. A look at the held-out split first: size, vocabulary, duplicate rates (streams about 20 MB).
$LLMFS data stats roneneldan/TinyStories --split validation --cache-dir "$OUT/hf_cache"

# 2. recipes/small.toml with the hub dataset as its only source. Its BPE tokenizer is trained on the first
#    3M characters, and 1% of the stories (by content hash) are held out for validation.
$LLMFS pretrain recipes/small.toml \
    --set "run.out_dir=\"$OUT\"" --set run.name=tinystories \
    --set 'data.sources={"roneneldan/TinyStories" = 1.0}' --set 'data.text_field="text"' \
    --set train.max_steps=5000 --set schedule.warmup_steps=200 "$@"

$LLMFS inspect "$OUT/tinystories/final"
