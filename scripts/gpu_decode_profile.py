"""Where the compiled (CUDA-graph) decode step's time goes: GPT-2 small fp32, batch 1, through `complete`."""

import os
import time

import torch
from torch.profiler import ProfilerActivity, profile

from llmfs.bench.generate import SIZES, build
from llmfs.bench.timing import sync
from llmfs.infer.compiled_decode import CompiledDecoder
from llmfs.infer.generate import complete
from llmfs.infer.sampling import SamplingConfig

dev = torch.device(os.environ.get("DEV", "cuda"))
model = build(SIZES["gpt2" if dev.type == "cuda" else "tiny"]).to(dev)
prompt = torch.randint(0, model.cfg.vocab_size, (1, 8), generator=torch.Generator().manual_seed(1)).tolist()
dec = CompiledDecoder(model)


def timed(n, decoder):
    sync(dev)
    t0 = time.perf_counter()
    complete(model, prompt, SamplingConfig(temperature=0, max_new_tokens=n), decoder=decoder)
    sync(dev)
    return time.perf_counter() - t0


for name, d in (("eager", None), ("compiled", dec)):
    for _ in range(2):
        timed(40, d)
    t40, t1 = min(timed(40, d) for _ in range(3)), min(timed(1, d) for _ in range(3))
    print(f"{name}: {(t40 - t1) / 39 * 1e3:.3f} ms/token, first token (prefill) {t1 * 1e3:.2f} ms", flush=True)
acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
with profile(activities=acts) as prof:
    complete(model, prompt, SamplingConfig(temperature=0, max_new_tokens=40), decoder=dec)
ka = prof.key_averages()
print(ka.table(sort_by="cpu_time_total", row_limit=25, max_name_column_width=70), flush=True)
if dev.type == "cuda":
    print(ka.table(sort_by="self_cuda_time_total", row_limit=10, max_name_column_width=70), flush=True)
