"""Two GPU questions behind docs/bench/gpu.md, in one call: (1) the bf16 matmul peak at n = 4096 vs 8192,
(2) the GPT-2-small bf16 training step (batch 32 x 1024) eager and compiled at vocabulary 50257 vs 50304
(nanoGPT's padding to a multiple of 64), same process, same peak.

    PYTHONPATH=. python3 scripts/gpu_probe.py [all|peak|train]        (DEV=cpu: a smoke test on tiny sizes)"""

import dataclasses
import os
import sys

import torch

from llmfs.bench import train as bt
from llmfs.bench.peak import _matmul_rate

dev = torch.device(os.environ.get("DEV", "cuda"))
TRAIN, VOCAB = ("tiny", 512) if dev.type == "cpu" else ("gpt2", 50257)  # cpu: smoke test
part = sys.argv[1] if len(sys.argv) > 1 else "all"

if part in ("all", "peak") and __name__ == "__main__":
    for n in (4096, 8192):
        print(f"peak n={n}: bf16 {max(_matmul_rate(dev, torch.bfloat16, n, 0.3) for _ in range(3)) / 1e12:.0f} "
              f"TFLOP/s", flush=True)

if part in ("all", "train") and __name__ == "__main__":
    peak = max(_matmul_rate(dev, torch.bfloat16, 8192, 0.3) for _ in range(3))
    for vocab in (VOCAB, (VOCAB + 63) // 64 * 64 + (64 if dev.type == "cpu" else 0)):
        base = bt.size(TRAIN, 32)
        size = dataclasses.replace(base, model={**base.model, "vocab_size": vocab})
        for compiled in (False, True):
            row = bt.run_variant(size, "bf16", dev, compiled=compiled, warmup=3, repeats=8, peak_flops=peak,
                                 datasheet=989e12)
            print(f"train vocab={vocab} {'compile' if compiled else 'eager'}: {row['step_ms']:.1f} ms "
                  f"{row['tok_s']:,.0f} tok/s MFU {row['mfu']:.1%} (peak {peak / 1e12:.0f}) datasheet "
                  f"{row['mfu_datasheet']:.1%} peak_mib {row.get('peak_mib', 0):.0f}", flush=True)
