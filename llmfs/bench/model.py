"""Model speed: train-step and forward tokens/s and peak memory, sdpa vs manual attention, classic vs modern
stack, against a same-run nanoGPT-shaped baseline.

    python -m llmfs.bench.model            # all sizes
    python -m llmfs.bench.model --quick    # the nanoGPT reference shape only, fewer steps

The reference shape is nanoGPT's CPU shakespeare-char run (README: n_layer 4, n_head 4, n_embd 128,
block_size 64, batch_size 12, vocab 65, dropout 0; train.py defaults: bias False, AdamW lr 1e-3 betas
(0.9, 0.99) weight decay 0.1 on matrices, grad clip 1.0). `NanoGPTBaseline` below re-implements the shape of
nanoGPT's model.py (fused c_attn, flash sdpa with is_causal, GELU MLP, LayerNorm, tied head) for timing only,
so llmfs and the baseline are measured in the same process under the same load.

Timing interleaves the models: each round runs `chunk` steps of every model in turn, and the reported time
is the best round's, so a burst of load from other processes cannot land on one model only. Beside the ratio of
best rounds, each model's time over the baseline's is also taken round by round (median and quartiles): on a
shared VM whose speed drifts from minute to minute, that spread says how far a ratio can be trusted.
Memory, two ways: "saved activations" = bytes autograd keeps for backward in one training forward
(saved-tensor hooks; exact, load-independent). "Peak": on CUDA `torch.cuda.max_memory_allocated`; on CPU the
growth of max RSS while a fresh subprocess builds and trains that one model (torch keeps no CPU allocator
statistics; VmHWM includes one-time thread-pool and kernel-library allocations: compare rows, not totals).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from llmfs.bench import report as rep
from llmfs.bench.timing import saved_activation_mib as saved_mib
from llmfs.config import from_dict
from llmfs.model.config import ModelConfig
from llmfs.model.transformer import Transformer


# ------------------------------------------------------------------------------ nanoGPT-shaped baseline
class _NanoAttention(nn.Module):
    def __init__(self, d: int, h: int, bias: bool):
        super().__init__()
        self.h = h
        self.c_attn = nn.Linear(d, 3 * d, bias=bias)
        self.c_proj = nn.Linear(d, d, bias=bias)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class _NanoBlock(nn.Module):
    def __init__(self, d: int, h: int, bias: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, bias=bias)
        self.attn = _NanoAttention(d, h, bias)
        self.ln_2 = nn.LayerNorm(d, bias=bias)
        self.c_fc, self.gelu, self.c_proj = nn.Linear(d, 4 * d, bias=bias), nn.GELU(), nn.Linear(4 * d, d, bias=bias)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(self.gelu(self.c_fc(self.ln_2(x))))


class NanoGPTBaseline(nn.Module):
    """A re-implementation of the shape of nanoGPT's model.py (Karpathy), for same-run timing only."""

    def __init__(self, vocab: int, block: int, d: int, layers: int, heads: int, bias: bool = False):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(block, d)
        self.h = nn.ModuleList(_NanoBlock(d, heads, bias) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d, bias=bias)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.wte.weight = self.lm_head.weight

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


# ------------------------------------------------------------------------------------------- shapes
@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    vocab: int
    block: int
    d: int
    layers: int
    heads: int
    batch: int


REFERENCE = Shape("nanogpt-shakespeare-char-cpu", 65, 64, 128, 4, 4, 12)
SIZES = (REFERENCE, Shape("d192-L4-T128", 512, 128, 192, 4, 4, 8), Shape("d256-L4-T256", 512, 256, 256, 4, 4, 4))
STACKS = {  # bias False in both, as nanoGPT's train.py default, so the baseline comparison is like for like
    "classic": dict(position="learned", norm="layernorm", mlp="gelu", bias=False),
    "modern": dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=False),
}


def model_config(shape: Shape, stack: str, impl: str) -> ModelConfig:
    return from_dict(ModelConfig, dict(vocab_size=shape.vocab, max_seq_len=shape.block, d_model=shape.d,
                                       n_layers=shape.layers, n_heads=shape.heads, attn_impl=impl,
                                       **STACKS[stack]))


def build(shape: Shape, variant: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if variant == "nanogpt-baseline":
        return NanoGPTBaseline(shape.vocab, shape.block, shape.d, shape.layers, shape.heads)
    stack, impl = variant.split("/")
    return Transformer(model_config(shape, stack, impl), generator=torch.Generator().manual_seed(seed))


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out if isinstance(out, torch.Tensor) else out.logits


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """nanoGPT's configure_optimizers: weight decay on matrices only, AdamW(lr 1e-3, betas 0.9 / 0.99)."""
    params = {id(p): p for p in model.parameters()}.values()
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99))


def llmfs_optimizer(model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """What `llmfs pretrain` builds for the same hyperparameters (fused AdamW on CPU and CUDA)."""
    from llmfs.train.optim import OptimConfig, build_optimizer

    return build_optimizer(model, from_dict(OptimConfig, {"lr": 1e-3, "betas": [0.9, 0.99], "weight_decay": 0.1}),
                           device)


class Runner:
    """One model with its optimizer and a fixed random batch. A variant ending in "@medium" runs under
    `torch.set_float32_matmul_precision("medium")` (`run.matmul_precision`; set before each of its steps, so
    runners of both kinds interleave in one process); every other variant runs exact fp32 ("highest")."""

    def __init__(self, shape: Shape, variant: str, device: torch.device):
        variant, _, precision = variant.partition("@")
        self.precision = precision or "highest"
        self.model = build(shape, variant).to(device)
        # the baseline steps with nanoGPT's own optimizer, llmfs's stacks with llmfs's
        self.opt = make_optimizer(self.model) if variant == "nanogpt-baseline" else llmfs_optimizer(self.model, device)
        g = torch.Generator().manual_seed(1)
        data = torch.randint(0, shape.vocab, (shape.batch, shape.block + 1), generator=g).to(device)
        self.x, self.y = data[:, :-1], data[:, 1:]
        self.device = device

    def train_step(self) -> None:
        torch.set_float32_matmul_precision(self.precision)
        self.model.train()
        logits = _logits(self.model, self.x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), self.y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def forward(self) -> None:
        torch.set_float32_matmul_precision(self.precision)
        self.model.eval()
        _logits(self.model, self.x)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def interleaved_ms(runners: dict[str, Runner], step: str, *, rounds: int, chunk: int, warmup: int) -> dict:
    """Per-round ms per step of each model, the models taking turns chunk by chunk (so a burst of load from other
    processes lands on neighbouring rounds of every model, not on one model's whole measurement)."""
    for r in runners.values():
        for _ in range(warmup):
            getattr(r, step)()
        r.sync()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, r in runners.items():
            t0 = time.perf_counter()
            for _ in range(chunk):
                getattr(r, step)()
            r.sync()
            times[name].append((time.perf_counter() - t0) * 1000 / chunk)
    return times


def paired_ratios(times: list[float], baseline: list[float]) -> dict:
    """A model's time over the baseline's, round by round (same rounds, neighbouring in time): the median and
    the quartiles. On a shared machine whose speed drifts between minutes, the ratio of the two best rounds can
    pair a quiet minute of one model with a busy minute of the other; the per-round ratios show the spread."""
    ratios = sorted(t / b for t, b in zip(times, baseline, strict=True))
    if len(ratios) < 2:
        return {"ratio_median": ratios[0], "ratio_q1": ratios[0], "ratio_q3": ratios[0]}
    q1, q2, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return {"ratio_median": q2, "ratio_q1": q1, "ratio_q3": q3}


def saved_activation_mib(runner: Runner) -> float:
    """MiB of activations autograd saves for backward in one training forward (timing.saved_activation_mib)."""
    def forward():
        logits = _logits(runner.model, runner.x)
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), runner.y.reshape(-1))

    runner.model.train()
    return saved_mib(forward, runner.model.parameters())


def _high_water_kib() -> float:
    """VmHWM (peak resident set) of this process from /proc, in KiB. Unlike getrusage's ru_maxrss it starts
    afresh in a spawned child (ru_maxrss keeps the forking parent's peak across exec on Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def _peak_memory_child(shape: Shape, variant: str, steps: int, queue) -> None:
    before = _high_water_kib()
    runner = Runner(shape, variant, torch.device("cpu"))
    for _ in range(steps):
        runner.train_step()
    queue.put((_high_water_kib() - before) / 1024)


def peak_memory_mib(shape: Shape, variant: str, device: torch.device, steps: int = 3) -> float:
    """Peak memory of a few train steps of one model (see the module docstring for how)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        runner = Runner(shape, variant, device)
        for _ in range(steps):
            runner.train_step()
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        del runner
        return peak
    if not os.path.exists("/proc/self/status"):
        return math.nan  # CPU peak memory is measured on Linux only
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_memory_child, args=(shape, variant, steps, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def run(sizes=SIZES, *, device: str = "cpu", rounds: int = 5, chunk: int = 10, warmup: int = 5,
        memory: bool = True, medium: bool = False, progress=None) -> list[dict]:
    """One row per (size, variant): ms/iter and tokens/s for a train step and a forward, and memory.
    `medium` adds the sdpa stacks under matmul precision "medium". `progress(rows)` is called with each
    finished size's rows."""
    dev = torch.device(device)
    rows = []
    for shape in sizes:
        size_rows = []
        variants = ["nanogpt-baseline"] + [f"{s}/{i}" for s in STACKS for i in ("sdpa", "manual")]
        variants += [f"{s}/sdpa@medium" for s in STACKS] if medium else []
        try:
            runners = {v: Runner(shape, v, dev) for v in variants}
            train_rounds = interleaved_ms(runners, "train_step", rounds=rounds, chunk=chunk, warmup=warmup)
            fwd_rounds = interleaved_ms(runners, "forward", rounds=rounds, chunk=chunk, warmup=warmup)
            # the best round is the figure (`timeit`'s advice: other processes only ever add time)
            train = {v: min(t) for v, t in train_rounds.items()}
            fwd = {v: min(t) for v, t in fwd_rounds.items()}
            tokens = shape.batch * shape.block
            for v in variants:
                n = sum(p.numel() for p in {id(p): p for p in runners[v].model.parameters()}.values())
                size_rows.append({"size": shape.name, "variant": v, "params": n, "train_ms": train[v],
                             "train_tok_s": tokens / train[v] * 1000, "fwd_ms": fwd[v],
                             "fwd_tok_s": tokens / fwd[v] * 1000,
                             "vs_baseline": train[v] / train["nanogpt-baseline"],
                             **paired_ratios(train_rounds[v], train_rounds["nanogpt-baseline"]),
                             "saved_mib": saved_activation_mib(runners[v]),
                             "peak_mib": peak_memory_mib(shape, v, dev) if memory else math.nan})
        finally:
            torch.set_float32_matmul_precision("highest")  # the runners set it per step; leave torch's default
        del runners
        rows += size_rows
        if progress is not None:
            progress(size_rows)
    return rows


COLUMNS = (
    rep.Column("size", "size"), rep.Column("variant", "variant"), rep.Column("params", "params", ",d"),
    rep.Column("train_ms", "train ms/iter", ".1f"), rep.Column("train_tok_s", "train tok/s", ",.0f"),
    rep.Column("fwd_ms", "fwd ms", ".1f"), rep.Column("fwd_tok_s", "fwd tok/s", ",.0f"),
    rep.Column("vs_baseline", "train time vs baseline", lambda r: f"{r['vs_baseline']:.2f}x"),
    rep.Column("ratio_median", "per round: median (quartiles)",
               lambda r: f"{r['ratio_median']:.2f}x ({r['ratio_q1']:.2f}-{r['ratio_q3']:.2f})"),
    rep.Column("saved_mib", "saved activations MiB", ".1f"), rep.Column("peak_mib", "peak MiB", ".0f"),
)


def format_table(rows: list[dict]) -> str:
    return rep.markdown_table(rows, COLUMNS)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="reference shape only, 3 rounds unless --rounds")
    p.add_argument("--rounds", type=int, default=None, help="rounds of every model in turn [default: 5]")
    p.add_argument("--chunk", type=int, default=5, help="steps per model per round")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--medium", action="store_true", help="also the sdpa stacks with matmul_precision 'medium'")
    a = p.parse_args(argv)
    sizes = (REFERENCE,) if a.quick else SIZES
    print(f"torch {torch.__version__}, device {a.device}, threads {torch.get_num_threads()}", flush=True)
    rounds = a.rounds if a.rounds is not None else 3 if a.quick else 5
    run(sizes, device=a.device, rounds=rounds, chunk=a.chunk, memory=not a.no_memory,
        medium=a.medium, progress=lambda rows: print(format_table(rows), flush=True))


if __name__ == "__main__":
    main()
