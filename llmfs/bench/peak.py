"""The machine's matmul peak, measured on the spot: the denominator of MFU (model FLOPs utilisation).

A datasheet peak says what the chip could do; a measured square-matmul rate says what this process can get
from it now (thermal state, clocks, a shared CPU). MFU against the measured peak is what a training loop can
still win by better kernels; llmfs bench also shows the datasheet figure where it knows the GPU.
"""

from __future__ import annotations

import time

import torch


def measure_matmul_flops(device: torch.device, dtype: torch.dtype = torch.float32, *, size: int | None = None,
                         seconds: float = 0.5, trials: int = 3) -> float:
    """FLOP/s of repeated (n x n) @ (n x n) matmuls (2 n^3 FLOPs each): the best of `trials` runs of about
    `seconds / trials` each (the best, because a peak is what the machine can do when nothing interferes)."""
    return max(_matmul_rate(device, dtype, size, seconds / trials) for _ in range(trials))


def _matmul_rate(device: torch.device, dtype: torch.dtype, size: int | None, seconds: float) -> float:
    # On a GPU: 8192, the size the workplace's H200 figures use (769-798 bf16 TFLOP/s there; in llmfs's own
    # runs 4096 gave 648-693 and 8192 669-689, docs/bench/gpu.md); random data, never zeros (they run faster).
    n = size or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    warm_until = time.perf_counter() + (0.3 if device.type == "cuda" else 0.0)
    while True:  # warm up kernels and caches; on a GPU, long enough for the clocks to leave idle (345 MHz)
        a @ b
        sync()
        if time.perf_counter() >= warm_until:
            break
    iters, t0 = 0, time.perf_counter()
    while True:
        a @ b
        iters += 1
        if iters % 4 == 0:
            sync()
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                return 2 * n**3 * iters / elapsed
