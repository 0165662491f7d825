#!/usr/bin/env bash
# Cleaning, tokenizer and pretraining on plain local text files, fully offline.
#
#   examples/local_text.sh TEXT [OUT [--set KEY=VALUE ...]]
#
# TEXT is a UTF-8 .txt file or a folder of them (read recursively); a line holding only <|endoftext|> ends a
# document. OUT is where the cleaned corpus, the tokenizer and the run go (default runs/local_text); further
# arguments go to
# `llmfs pretrain`. STEPS and VOCAB scale the run: the defaults train for about 10 minutes on a 2-core CPU;
# tests/test_examples.py runs this script on a tiny model for 2 steps. LLMFS is the command to call (default:
# llmfs). Run it from the repository root (it reads recipes/small.toml).
set -euo pipefail

TEXT=${1:?usage: examples/local_text.sh TEXT_FILE_OR_FOLDER [OUT]}
OUT=${2:-runs/local_text}
shift $(( $# < 2 ? $# : 2 ))  # what is left goes to llmfs pretrain
STEPS=${STEPS:-1500}
VOCAB=${VOCAB:-2048}
LLMFS=${LLMFS:-llmfs}
mkdir -p "$OUT"

# 1. Is the corpus what we think it is? Size, vocabulary, sentence lengths, duplicate rates.
$LLMFS data stats "$TEXT"

# 2. Pretraining holds out whole documents (by content hash) for validation, so a single file without
#    <|endoftext|> lines (one document, such as Tiny Shakespeare) is first cut into documents of 200 lines.
DOCS=$TEXT
if [ -f "$TEXT" ] && ! grep -qx '<|endoftext|>' "$TEXT"; then
    DOCS="$OUT/documents.txt"
    awk '{ print } NR % 200 == 0 { print "<|endoftext|>" }' "$TEXT" > "$DOCS"
fi

# 3. Clean: normalise, drop low-quality and repeated documents (Gopher rules), near-duplicates (MinHash) and mask
#    PII. OUT/clean/report.json says what was dropped and why, with examples. (An interrupted `llmfs data clean`
#    resumes when run again with the same --out; this script starts its cleaning afresh each time.)
rm -rf "$OUT/clean"
$LLMFS data clean --input "$DOCS" --out "$OUT/clean" --workers 2 --quiet
DATA="$OUT/clean/clean.jsonl"

# 4. A byte-level BPE trained on the cleaned text, and how well it compresses it.
$LLMFS tokenize train-bpe --input "$DATA" --vocab-size "$VOCAB" --out "$OUT/tokenizer" --quiet \
    --cache-dir "$OUT/hf_cache"
$LLMFS tokenize stats --tokenizer "$OUT/tokenizer" --input "$DATA" --max-chars 200000 --top 5 \
    --cache-dir "$OUT/hf_cache"

# 5. Pretrain the small modern stack (recipes/small.toml) on it with that tokenizer.
$LLMFS pretrain recipes/small.toml \
    --set "run.out_dir=\"$OUT\"" --set run.name=pretrain \
    --set "tokenizer.path=\"$OUT/tokenizer\"" --set "model.vocab_size=$VOCAB" \
    --set "data.sources={\"$DATA\" = 1.0}" --set data.valid_fraction=0.05 \
    --set "train.max_steps=$STEPS" --set "schedule.warmup_steps=$((STEPS / 15))" \
    --set 'train.sample_prompts=["ROMEO:", "The "]' "$@"

# 6. Verify the checkpoint; draw the curves when matplotlib is there (pip install 'llmfs[plot]').
$LLMFS inspect "$OUT/pretrain/final"
$LLMFS plot "$OUT/pretrain" || echo "llmfs plot skipped: it needs pip install 'llmfs[plot]'"
