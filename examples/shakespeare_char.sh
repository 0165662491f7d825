#!/usr/bin/env bash
# llmfs against nanoGPT's CPU shakespeare-char run: the same text, the same 90/10 split, the same model shape,
# then the same wall-clock budget. Prints each run's validation bits per byte and wall-clock seconds.
#
#   examples/shakespeare_char.sh TEXT [OUT]      TEXT: tinyshakespeare (input.txt of karpathy/char-rnn, 1.1 MB)
#   BUDGET_STEPS=2100 examples/shakespeare_char.sh input.txt
#
# 1. nanogpt-shape: nanoGPT's configuration in llmfs (learned positions, LayerNorm, GELU, exact fp32 matmuls as
#    nanoGPT on a CPU, no compile, 2000
#    iterations of 12 x 64 characters, AdamW 1e-3, cosine to 1e-4): a same-machine reproduction of nanoGPT's run.
# 2. llmfs: recipes/shakespeare_char.toml as written (RoPE, RMSNorm, SwiGLU, bf16-input matmuls) for BUDGET_STEPS steps,
#    chosen so the whole command, compilation and evaluations included, takes what nanoGPT's takes (~100 s).
# docs/bench/nanogpt.md records the figures. LLMFS is the command (default: llmfs).
set -euo pipefail

LLMFS=${LLMFS:-llmfs}
PYTHON=${PYTHON:-python}
TEXT=${1:?usage: examples/shakespeare_char.sh TEXT [OUT]  (TEXT: tinyshakespeare, e.g. curl -o input.txt https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt)}
OUT=${2:-runs/shakespeare}
BUDGET_STEPS=${BUDGET_STEPS:-2100}
COMMON=(--set "data.sources={\"$TEXT\" = 1.0}" --set "run.out_dir=\"$OUT\"" --force)

timed() {  # NAME, then the command: runs it and appends "NAME SECONDS" to OUT/wall.txt
    local name=$1 t0
    shift
    t0=$(date +%s.%N)
    "$@"
    mkdir -p "$OUT"
    echo "$name $($PYTHON -c "print(round($(date +%s.%N) - $t0, 1))")" >> "$OUT/wall.txt"
}

rm -f "$OUT/wall.txt"
timed nanogpt-shape $LLMFS pretrain recipes/shakespeare_char.toml "${COMMON[@]}" --set run.name=nanogpt-shape \
    --set 'model.position="learned"' --set 'model.norm="layernorm"' --set 'model.mlp="gelu"' \
    --set train.compile=false --set 'run.matmul_precision="highest"' --set train.max_steps=2000
timed llmfs $LLMFS pretrain recipes/shakespeare_char.toml "${COMMON[@]}" --set run.name=llmfs \
    --set "train.max_steps=$BUDGET_STEPS"

$PYTHON - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
for line in (out / "wall.txt").read_text().splitlines():
    name, seconds = line.split()
    rows = [json.loads(r) for r in (out / name / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in rows if r["kind"] == "eval"][-1]
    tps = sorted(r["tok_per_s"] for r in rows if r["kind"] == "train")
    print(f"{name:14s} steps {final['step']:5d}  wall {float(seconds):6.1f} s  median {tps[len(tps) // 2]:8,.0f} tok/s  "
          f"val loss {final['val_loss']:.4f} nats/char  val bpb {final['val_bpb']:.4f}")
EOF
