#!/usr/bin/env bash
# The CUDA checks and figures, in one call on a lent GPU (the device tool gives 15 minutes per session):
#   bash scripts/gpu_check.sh OUT_DIR
# In priority order, each step under its own time limit, logs and JSON reports written to OUT_DIR as they come:
#   1. pytest -m gpu             the CUDA tests (model on CUDA vs CPU, bf16 autocast, DecodeCache vs the full
#                                forward on CUDA, the CUDA-graph decode step vs eager, bench train --amp)
#   2. bench train --compile     GPT-2-small bf16 training step, eager and torch.compile: tokens/s, MFU (#6)
#   3. bench generate --compile  GPT-2-small decode: eager / CUDA-graph / transformers, bandwidth use (#7)
#   4. pretrain + generate       recipes/small.toml on CUDA (bf16, compile, fused AdamW), then sampling with the
#                                compiled decode step from its checkpoint
#   5. bench model --quick       nanoGPT's shape: llmfs classic / modern, sdpa / manual vs the baseline (#5)
# Results go to docs/bench/*.md by hand (the device keeps nothing). Uses only packages of a stock CUDA PyTorch
# image (torch, typer, rich, tokenizers, safetensors, transformers); llmfs runs from the checkout.
set -u
OUT=${1:?usage: gpu_check.sh OUT_DIR}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
RUN=$(mktemp -d)
step() {  # step NAME SECONDS CMD...: run CMD under a limit, log to OUT/NAME.log, print its tail and status
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "== $name: rc=$rc in $((SECONDS - t0)) s"
    tail -n 25 "$OUT/$name.log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda,
  torch.cuda.get_device_name(), 'transformers', transformers.__version__)"; } >"$OUT/env.log" 2>&1
cat "$OUT/env.log"

step tests 120 $PY -m pytest -q -m gpu -p no:cacheprovider tests
step train 170 $PY -m llmfs bench train --device cuda --size gpt2 --batch 32 --compile --json "$OUT/train.json"
step generate 150 $PY -m llmfs bench generate --device cuda --size gpt2 --compile --new-tokens 128 \
    --json "$OUT/generate.json"
step pretrain 110 bash -c "$PY -m llmfs pretrain recipes/small.toml --device cuda --quiet \
    --set run.out_dir=$RUN --set train.max_steps=300 --set train.eval_every=150 --set train.compile=true \
    --set tokenizer.train_chars=500000 && tail -n 3 $RUN/small/metrics.jsonl && \
    $PY -m llmfs generate $RUN/small/final --device cuda --compile --seed 0 --max-new-tokens 60 \
    --prompt 'Once upon a time' --prompt 'The little dog' --json"
step model 45 $PY -m llmfs.bench.model --device cuda --quick
