"""`llmfs bench train`: tokens/s, MFU and memory of llmfs's own training step at a few model sizes.

The step is the one every trainer runs (`llmfs.train.step.train_step`: autocast forward, float32 cross-entropy,
backward, grad-norm clip 1.0, AdamW from `build_optimizer`, zero_grad), on llmfs's `Transformer`.

- tokens/s = batch * seq_len / median step time (timing.py: warm-up steps first, then timed steps).
- MFU = model.flops_per_token(seq_len) * tokens/s / peak (PaLM's 6N + attention estimate). The peak is a square
  matmul rate measured on the spot in the step's matmul dtype (peak.py); on GPUs whose datasheet is known the
  MFU against the dense bf16 datasheet peak is shown too (`mfu_datasheet`).
- memory: `saved_mib` = activations autograd keeps for backward (exact, any device); `state_mib` = weights +
  gradients + AdamW moments; `peak_mib` = torch.cuda.max_memory_allocated on CUDA; on CPU (no allocator
  statistics) the resident-memory growth of a fresh process running the same steps (`cpu_peak_mib`).
- `--amp`: fp32 vs bf16 autocast (+ fp16 with a GradScaler on CUDA), each from the same init on the same
  batches for the same K steps, so `loss` (the K-th step's training loss) shows what the speed-up costs.
- `--compile`: the same variants through `torch.compile`; a variant that fails to compile is reported in a
  note, not silently dropped.
- `--profile DIR`: a torch.profiler trace of a few steps written to DIR (TensorBoard / Chrome trace JSON,
  open in chrome://tracing, Perfetto or TensorBoard's profiler) and the top operators by self time.

Batches are learnable, not noise: each row follows a fixed random permutation of the vocabulary (token t+1 =
perm[token t]) with 10 % random tokens mixed in, so the loss falls within a few steps and precision effects
on the loss are visible.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from llmfs.bench import report as rep
from llmfs.bench.peak import measure_matmul_flops
from llmfs.bench.timing import environment, peak_mib, reset_peak, saved_activation_mib, time_calls
from llmfs.config import from_dict
from llmfs.errors import LlmfsError
from llmfs.model.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class TrainSize:
    name: str
    model: dict
    batch: int


SIZES = {
    "tiny": TrainSize("tiny", dict(vocab_size=512, max_seq_len=64, d_model=64, n_layers=2, n_heads=4), 8),
    "small": TrainSize("small", dict(vocab_size=2048, max_seq_len=128, d_model=128, n_layers=4, n_heads=4), 8),
    "medium": TrainSize("medium", dict(vocab_size=4096, max_seq_len=256, d_model=256, n_layers=4, n_heads=4), 4),
    # GPT-2 small with the vocabulary padded from 50257 to 50304 (a multiple of 64) as nanoGPT trains it: the
    # (tokens, 768) @ (768, V) head is the largest matmul, and tensor cores want V aligned (docs/bench/gpu.md)
    "gpt2": TrainSize("gpt2", dict(vocab_size=50304, max_seq_len=1024, d_model=768, n_layers=12, n_heads=12,
                                   position="learned", norm="layernorm", mlp="gelu_tanh", bias=True), 8),
}
DEFAULT_SIZES = {"cpu": ("tiny", "small", "medium"), "cuda": ("small", "medium", "gpt2")}
MATMUL_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Dense bf16 tensor-core peaks from the vendor datasheets (no 2:4 sparsity), matched on the device name.
DATASHEET_BF16 = (("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("A100", 312e12))

KEYS = ("size", "precision", "mode")
COLUMNS = (
    rep.Column("size", "size"), rep.Column("precision", "precision"), rep.Column("mode", "mode"),
    rep.Column("params", "params", ",d"), rep.Column("tokens_per_step", "tokens/step", ",d"),
    rep.spread_column("step", "step ms", 1),
    rep.Column("tok_s", "tok/s", ",.0f"), rep.Column("tflops", "TFLOP/s", ".3f"),
    rep.Column("mfu", "MFU (measured peak)", ".1%"), rep.Column("mfu_datasheet", "MFU (datasheet)", ".1%"),
    rep.Column("saved_mib", "saved act. MiB", ".1f"), rep.Column("state_mib", "state MiB", ".1f"),
    rep.Column("peak_mib", "peak MiB", ".0f"), rep.Column("loss", "loss after K steps", ".4f"),
)
METRICS = ("tok_s", "mfu", "saved_mib", "peak_mib", "loss")


def datasheet_bf16_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in DATASHEET_BF16 if key in name), None)


def check_sizes(sizes) -> None:
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise LlmfsError(f"--size {unknown[0]}: not a bench train size; use one of {', '.join(SIZES)}")


def check_matmul_precision(value: str) -> None:
    if value not in ("highest", "high", "medium"):
        raise LlmfsError(f"--matmul-precision {value!r}: use 'highest', 'high' or 'medium' (as run.matmul_precision)")


def check_batch(batch: int | None) -> None:
    if batch is not None and batch < 1:
        raise LlmfsError(f"--batch {batch}: sequences per step must be at least 1")


def size(name: str, batch: int | None = None) -> TrainSize:
    """The named size, with its batch replaced when `batch` is given (--batch: fill a large GPU)."""
    return SIZES[name] if batch is None else dataclasses.replace(SIZES[name], batch=batch)


def make_batches(size: TrainSize, n: int, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """n (inputs, targets) pairs, (B, T) each: permutation chains with 10 % noise (module docstring)."""
    V, T, B = size.model["vocab_size"], size.model["max_seq_len"], size.batch
    perm = torch.randperm(V, generator=torch.Generator().manual_seed(7))
    out = []
    for i in range(n):
        g = torch.Generator().manual_seed(1000 + i)
        noise = torch.rand(B, T + 1, generator=g) < 0.1  # (B, T+1)
        rand = torch.randint(V, (B, T + 1), generator=g)  # (B, T+1)
        seq = [rand[:, 0]]
        for t in range(1, T + 1):
            seq.append(torch.where(noise[:, t], rand[:, t], perm[seq[-1]]))
        data = torch.stack(seq, dim=1).to(device)  # (B, T+1)
        out.append((data[:, :-1], data[:, 1:]))
    return out


class Trainer:
    """One model, its optimizer and its precision; `step(batch)` is one llmfs training step."""

    def __init__(self, size: TrainSize, precision: str, device: torch.device, *, compiled: bool = False):
        from llmfs.model.transformer import Transformer
        from llmfs.runtime import DistEnv, Runtime
        from llmfs.train.optim import OptimConfig, build_optimizer

        cfg = from_dict(ModelConfig, dict(size.model))
        self.model = Transformer(cfg, generator=torch.Generator().manual_seed(0)).to(device)
        self.optimizer = build_optimizer(self.model, OptimConfig(lr=3e-3), device)
        self.runtime = Runtime(device, precision, DistEnv(), seed=0)
        self.scaler = self.runtime.grad_scaler()
        self.forward_model = torch.compile(self.model) if compiled else self.model
        self.seq_len = cfg.max_seq_len
        self.last_loss = float("nan")

    @staticmethod
    def loss_fn(model, x, y):
        from llmfs.train.step import lm_loss

        out = model(x)
        return lm_loss(out.logits, y), out

    def step(self, batch) -> None:
        from llmfs.train.step import train_step

        self.model.train()
        result = train_step(self.forward_model, self.optimizer, [batch], self.loss_fn,
                            autocast=self.runtime.autocast, grad_clip=1.0, scaler=self.scaler)
        self.last_loss = result.loss

    def saved_mib(self, batch) -> float:
        with self.runtime.autocast():
            return saved_activation_mib(lambda: self.loss_fn(self.model, *batch), self.model.parameters())

    def state_mib(self) -> float:
        """Weights + gradients (same size as the weights) + optimizer state tensors, in MiB."""
        weights = sum(p.numel() * p.element_size() for p in self.model.parameters())
        state = sum(t.numel() * t.element_size() for s in self.optimizer.state.values() for t in s.values()
                    if isinstance(t, torch.Tensor))
        return (2 * weights + state) / 2**20


def _cpu_peak_child(size: TrainSize, precision: str, steps: int, queue) -> None:
    from llmfs.bench.model import _high_water_kib

    before = _high_water_kib()
    trainer = Trainer(size, precision, torch.device("cpu"))
    for batch in make_batches(size, steps, torch.device("cpu")):
        trainer.step(batch)
    queue.put((_high_water_kib() - before) / 1024)


def cpu_peak_mib(size: TrainSize, precision: str, steps: int = 3) -> float | None:
    """Peak resident memory added by building the model and running `steps` training steps, measured in a fresh
    spawned process (VmHWM growth, Linux only; it includes one-time thread-pool and kernel-library allocations:
    compare rows, not totals). None where /proc is missing."""
    import multiprocessing
    import os

    if not os.path.exists("/proc/self/status"):
        return None
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_cpu_peak_child, args=(size, precision, steps, queue))
    proc.start()
    try:
        return queue.get(timeout=600)
    finally:
        proc.join()


def run_variant(size: TrainSize, precision: str, device: torch.device, *, compiled: bool, warmup: int,
                repeats: int, peak_flops: float, datasheet: float | None) -> dict:
    """One row: `warmup + repeats` steps (K) from the same init on the same batches; the last loss is kept."""
    reset_peak(device)
    trainer = Trainer(size, precision, device, compiled=compiled)
    batches = iter(make_batches(size, warmup + repeats, device))
    t0 = time.perf_counter()
    trainer.step(next(batches))  # first step apart: it includes compilation and lazy initialisation
    first = time.perf_counter() - t0
    timing = time_calls(lambda: trainer.step(next(batches)), device, warmup=warmup - 1, repeats=repeats)
    tokens = size.batch * trainer.seq_len
    tok_s = tokens / timing.median
    flops = trainer.model.flops_per_token(trainer.seq_len) * tok_s
    row = {"size": size.name, "precision": precision, "mode": "compile" if compiled else "eager",
           "params": trainer.model.num_params(), "tokens_per_step": tokens, "steps": warmup + repeats,
           **timing.fields("step"), "first_step_s": first, "tok_s": tok_s, "tflops": flops / 1e12,
           "peak_tflops": peak_flops / 1e12, "mfu": flops / peak_flops}
    if datasheet is not None:
        row["mfu_datasheet"] = flops / datasheet
    peak = peak_mib(device)
    if device.type == "cpu" and not compiled:  # torch keeps no CPU allocator statistics: measure the process
        peak = cpu_peak_mib(size, precision)
    row["saved_mib"] = trainer.saved_mib(make_batches(size, 1, device)[0])
    row["state_mib"] = trainer.state_mib()
    if peak is not None:
        row["peak_mib"] = peak
    row["loss"] = trainer.last_loss
    return row


def precisions(device: torch.device, amp: bool) -> list[str]:
    from llmfs.runtime import resolve_precision

    if not amp:
        return [resolve_precision("auto", device)]
    return ["fp32", "bf16", "fp16"] if device.type == "cuda" else ["fp32", "bf16"]


def run(sizes, device: torch.device, *, amp: bool = False, compile: bool = False, quick: bool = False,
        batch: int | None = None, progress=None) -> dict:
    """The train report: one row per (size, precision, eager|compile); `batch` overrides every size's batch."""
    check_sizes(sizes)
    check_batch(batch)
    warmup, repeats = (1, 3) if quick else (2, 6)
    precs = precisions(device, amp)
    env = environment(device, "/".join(precs))
    if torch.get_float32_matmul_precision() != "highest":  # --matmul-precision: fp32 rows, and their MFU peak
        env["matmul_precision"] = torch.get_float32_matmul_precision()
        env["dtype"] += f" (fp32 matmul precision {env['matmul_precision']})"
    datasheet = datasheet_bf16_flops(device)
    peaks = {p: measure_matmul_flops(device, MATMUL_DTYPES[p], size=512 if quick and device.type == "cpu" else None,
                                     seconds=0.2 if quick else 0.5) for p in precs}
    env["matmul_peak_tflops"] = {p: f / 1e12 for p, f in peaks.items()}
    if datasheet is not None:
        env["datasheet_bf16_tflops"] = datasheet / 1e12
    notes = [f"K = {warmup + repeats} steps per row ({warmup} warm-up, {repeats} timed; median and min-max shown);"
             " MFU peak = square matmul measured now: "
             + ", ".join(f"{p} {f / 1e12:.3f} TFLOP/s" for p, f in peaks.items())
             + (f"; datasheet dense bf16 {datasheet / 1e12:.0f} TFLOP/s" if datasheet else "")]
    if device.type == "cpu":
        notes.append("CPU peak MiB: resident-memory growth of a fresh process building the model and running 3 "
                     "steps (eager rows; includes one-time library allocations: compare rows, not totals)")
    rows = []
    for name in sizes:
        for prec in precs:
            for compiled in (False, True) if compile else (False,):
                try:
                    row = run_variant(size(name, batch), prec, device, compiled=compiled, warmup=warmup,
                                      repeats=repeats, peak_flops=peaks[prec], datasheet=datasheet)
                except Exception as e:  # noqa: BLE001 - a compiler missing or failing is reported, not fatal
                    if not compiled:
                        raise
                    notes.append(f"torch.compile failed for {name}/{prec} ({e.__class__.__name__}: "
                                 f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}); no compiled row")
                    continue
                rows.append(row)
                if progress is not None:
                    progress(row)
    return rep.make("train", env, KEYS, rows, notes)


def profile(size: TrainSize, device: torch.device, out_dir: str | Path, *, steps: int = 3,
            row_limit: int = 15) -> dict:
    """Trace `steps` training steps (after one warm-up) into out_dir; return the trace files and top ops."""
    from torch.profiler import ProfilerActivity, schedule, tensorboard_trace_handler
    from torch.profiler import profile as torch_profile

    from llmfs.runtime import resolve_precision

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    before = set(out_dir.glob("*.json"))
    trainer = Trainer(size, resolve_precision("auto", device), device)
    batches = make_batches(size, steps + 1, device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities, schedule=schedule(wait=0, warmup=1, active=steps),
                       on_trace_ready=tensorboard_trace_handler(str(out_dir), worker_name="llmfs-bench-train"),
                       record_shapes=True, acc_events=True) as prof:
        for batch in batches:
            trainer.step(batch)
            prof.step()
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = prof.key_averages()
    key = (lambda e: e.self_device_time_total) if device.type == "cuda" else \
        (lambda e: e.self_cpu_time_total)
    top = sorted(events, key=key, reverse=True)[:row_limit]
    total = sum(key(e) for e in events) or 1
    return {"dir": str(out_dir), "steps": steps,
            "trace_files": sorted(str(p) for p in set(out_dir.glob("*.json")) - before),
            "top_ops": [{"name": e.key, "calls": e.count, "self_ms": key(e) / 1e3, "share": key(e) / total}
                        for e in top],
            "table": events.table(sort_by=sort, row_limit=row_limit)}
