"""Honest timing shared by the `llmfs bench` suites: warm-up, repeats, median and spread, device sync.

Every suite times a callable the same way: `warmup` untimed calls (kernel selection, allocator growth, lazy
init, compilation), then `repeats` timed calls. On CUDA each call sits between two CUDA events and the device
is synchronised before the time is read, so asynchronous kernel launches are not mistaken for speed; on CPU
`time.perf_counter` brackets the call. The median is the figure reported (robust to one disturbed repeat on
a shared machine); min and max are kept as the spread.

`environment()` is the header printed with every table: device (and its name), torch version, torch threads,
dtype, load average, so a figure is never read without knowing what produced it.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds per call over the timed repeats."""

    median: float
    min: float
    max: float
    repeats: int

    def fields(self, name: str) -> dict:
        """`{name}_ms`, `{name}_ms_min`, `{name}_ms_max`: the row fields of one timed quantity."""
        return {f"{name}_ms": self.median * 1e3, f"{name}_ms_min": self.min * 1e3, f"{name}_ms_max": self.max * 1e3}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], device: torch.device, *, warmup: int, repeats: int) -> Timing:
    """Time `repeats` calls of `fn` after `warmup` untimed ones (see the module docstring)."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return Timing(statistics.median(times), min(times), max(times), repeats)


def saved_activation_mib(fn: Callable[[], object], params) -> float:
    """MiB of tensors autograd saves for backward while `fn()` runs (the forward of a training step),
    parameters excluded, each storage counted once, through saved-tensor hooks: exact, and independent of
    allocator noise and of other processes (the CPU memory figure; torch keeps no CPU allocator statistics)."""
    param_ptrs = {p.untyped_storage().data_ptr() for p in params}
    seen: set[int] = set()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        ptr = t.untyped_storage().data_ptr()
        if ptr not in param_ptrs and ptr not in seen:
            seen.add(ptr)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total / 2**20


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    """Peak allocated MiB since `reset_peak` on CUDA; None on CPU (no allocator statistics there)."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        return platform.processor() or platform.machine()


def environment(device: torch.device, dtype: str) -> dict:
    """What produced the figures: printed above every table and stored as the report's `env`."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"device": str(device), "device_name": name, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "dtype": dtype,
            "python": platform.python_version(), "load_avg_1m": load,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def describe(env: dict) -> str:
    load = f", load average {env['load_avg_1m']:.2f}" if env.get("load_avg_1m") is not None else ""
    return (f"device {env['device']} ({env['device_name']}), torch {env['torch']}, {env['threads']} threads, "
            f"dtype {env['dtype']}{load}, {env['date']}")


def forward_backward_fields(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, params, *,
                            warmup: int, repeats: int) -> dict:
    """Row fields of one layer: `fwd_ms` (no_grad forward) and `fwdbwd_ms` (forward + backward of a fixed
    random output gradient) with their spread, `saved_mib` (activations kept for backward) and, on CUDA,
    `peak_mib` (max allocated during one forward + backward, inputs and weights included)."""
    device = x.device
    x = x.detach().requires_grad_(True)
    grad = torch.randn_like(forward(x.detach()))

    def fwd():
        with torch.no_grad():
            forward(x)

    def fwd_bwd():
        forward(x).backward(grad)
        x.grad = None

    fields = {**time_calls(fwd, device, warmup=warmup, repeats=repeats).fields("fwd"),
              **time_calls(fwd_bwd, device, warmup=warmup, repeats=repeats).fields("fwdbwd")}
    fields["saved_mib"] = saved_activation_mib(lambda: forward(x), params)
    reset_peak(device)
    fwd_bwd()
    peak = peak_mib(device)
    if peak is not None:
        fields["peak_mib"] = peak
    return fields
