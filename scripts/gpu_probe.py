"""Second GPU call of session 7: (1) the matmul peak at 4096 vs 8192, (2) GPT-2 bf16 compiled train step at
vocab 50257 vs 50304 (nanoGPT's padding), (3) where the compiled decode step's 2.2 ms per token goes."""

import dataclasses
import sys
import time

import torch

from llmfs.bench import train as bt
from llmfs.bench.generate import SIZES, build, sync as _sync
from llmfs.bench.peak import _matmul_rate
from llmfs.infer.compiled_decode import CompiledDecoder
from llmfs.infer.generate import complete
from llmfs.infer.sampling import SamplingConfig

import os

dev = torch.device(os.environ.get("DEV", "cuda"))
GEN, TRAIN, VOCAB = (("tiny", "tiny", 512) if dev.type == "cpu" else ("gpt2", "gpt2", 50257))  # cpu: smoke test
sync = lambda: _sync(dev)  # noqa: E731
part = sys.argv[1] if len(sys.argv) > 1 else "all"

if part in ("all", "peak"):
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

if part in ("all", "decode"):
    model = build(SIZES[GEN]).to(dev)
    prompt = torch.randint(0, model.cfg.vocab_size, (1, 8), generator=torch.Generator().manual_seed(1)).tolist()
    dec = CompiledDecoder(model)
    N = 128 if dev.type == "cuda" else 40

    def gen(decoder):
        sync()
        t0 = time.perf_counter()
        complete(model, prompt, SamplingConfig(temperature=0, max_new_tokens=N), decoder=decoder)
        sync()
        return time.perf_counter() - t0

    def gen1(decoder):
        sync()
        t0 = time.perf_counter()
        complete(model, prompt, SamplingConfig(temperature=0, max_new_tokens=1), decoder=decoder)
        sync()
        return time.perf_counter() - t0

    for name, d in (("eager", None), ("compiled", dec)):
        for _ in range(2):
            gen(d)
        tn, t1 = min(gen(d) for _ in range(3)), min(gen1(d) for _ in range(3))
        print(f"generate {name}: {(tn - t1) / (N - 1) * 1e3:.3f} ms/token", flush=True)

    cache, step = dec.session(1)
    ids = torch.tensor([[5]], device=dev)

    def raw(n, synced, fn):
        cache.reset()
        cache.trim(torch.tensor([8], device=dev))
        x = ids
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            x = fn(x).argmax(-1)[:, None]
            if synced:
                x.tolist()
        sync()
        return (time.perf_counter() - t0) / n

    for synced in (False, True):
        for _ in range(2):
            raw(N, synced, step)
        print(f"raw compiled step, sync={synced}: {min(raw(N, synced, step) for _ in range(3)) * 1e3:.3f} ms/token",
              flush=True)
    # GPU time of one replay alone (CUDA events around many replays, no host waits between them)
    if dev.type != "cuda":
        sys.exit(0)
    cache.reset()
    cache.trim(torch.tensor([8], device=dev))
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    x = ids
    for _ in range(N):
        x = step(x).argmax(-1)[:, None]
    e.record()
    sync()
    print(f"events over {N} unsynced steps: {s.elapsed_time(e) / N:.3f} ms/token", flush=True)

    from torch.profiler import ProfilerActivity, profile
    cache.reset()
    cache.trim(torch.tensor([8], device=dev))
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        x = ids
        for _ in range(20):
            x = step(x).argmax(-1)[:, None]
            x.tolist()
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=18), flush=True)
    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=12), flush=True)
