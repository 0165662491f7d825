"""Device, precision, seeding and process-group setup, resolved once per run and passed in (never global).

`[run]` chooses the device (`auto` = cuda > mps > cpu) and the precision (`auto` = bf16 autocast on CUDA when
the GPU supports it, fp32 otherwise: CPUs without bf16 hardware run bf16 matmuls far slower than fp32), and how
exact fp32 matmuls are (`matmul_precision`, torch's `set_float32_matmul_precision`): `highest` = full fp32;
`high` (default) = TF32 on CUDA (10-bit mantissa inputs, fp32 accumulation, as nanoGPT sets), full fp32 on CPU;
`medium` = also bf16 inputs with fp32 accumulation on CPUs with bf16 hardware (AMX / AVX512-BF16; oneDNN's "bf32"),
where small fp32 matmuls run 2-3x faster, and full fp32 on CPUs without it. Unlike `precision = "bf16"` nothing
else changes: weights, activations, norms and softmax stay fp32 and no cast kernels run. Under
`torchrun` the rank, local rank and world size come from the environment; each process takes `cuda:LOCAL_RANK`
and joins the process group (nccl on CUDA, gloo on CPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import re
from typing import Literal

from llmfs.config import invalid, option
from llmfs.errors import LlmfsError

Precision = Literal["auto", "fp32", "bf16", "fp16"]
MatmulPrecision = Literal["highest", "high", "medium"]


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The `[run]` section shared by every stage."""

    name: str = "run"
    out_dir: str = "runs"
    device: str = "auto"  # auto | cpu | mps | cuda | cuda:N
    precision: Precision = "auto"
    matmul_precision: MatmulPrecision = "high"  # fp32 matmuls: highest | high (TF32 on CUDA) | medium (+ bf16 on CPU)
    seed: int = option(1337, ge=0)
    deterministic: bool = False  # torch.use_deterministic_algorithms; slower, bit-reproducible on one device

    def validate(self) -> None:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise invalid("device", f"{self.device!r} is not one of 'auto', 'cpu', 'mps', 'cuda', 'cuda:N'")
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.name):
            raise invalid("name", f"{self.name!r} must be letters, digits, '_', '-' or '.' (it names a folder)")


@dataclasses.dataclass(frozen=True)
class DistEnv:
    """The process's place under torchrun (all zeros / one for a plain `python` run)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_env(environ: dict[str, str] | None = None) -> DistEnv:
    """Read RANK / LOCAL_RANK / WORLD_SIZE as torchrun sets them."""
    env = os.environ if environ is None else environ
    values = {}
    for key, default in (("RANK", 0), ("LOCAL_RANK", 0), ("WORLD_SIZE", 1)):
        raw = env.get(key)
        try:
            values[key] = default if raw in (None, "") else int(raw)
        except ValueError:
            raise LlmfsError(f"environment variable {key}={raw!r} is not an integer (set by torchrun)") from None
    if values["WORLD_SIZE"] < 1 or not 0 <= values["RANK"] < values["WORLD_SIZE"]:
        raise LlmfsError(f"RANK={values['RANK']} is not in [0, WORLD_SIZE={values['WORLD_SIZE']})")
    return DistEnv(values["RANK"], values["LOCAL_RANK"], values["WORLD_SIZE"])


@dataclasses.dataclass(frozen=True)
class Runtime:
    """Everything a stage needs to place tensors and run steps; built by `setup` and passed down."""

    device: "torch.device"  # noqa: F821 - torch is imported lazily
    precision: str  # resolved: fp32 | bf16 | fp16
    dist: DistEnv
    seed: int
    matmul_precision: str = "highest"  # as set by `setup` (torch.set_float32_matmul_precision)
    # The process-wide torch settings `setup` found, which `teardown` puts back: (matmul precision, deterministic
    # algorithms, deterministic warn-only), or None when this Runtime was not built by `setup`.
    restore: tuple[str, bool, bool] | None = None

    @property
    def autocast_dtype(self) -> "torch.dtype | None":  # noqa: F821
        import torch

        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward-pass context: autocast to bf16/fp16, or nothing for fp32."""
        import torch

        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def grad_scaler(self) -> "torch.amp.GradScaler | None":  # noqa: F821
        """A GradScaler for fp16 (whose small range underflows gradients); None otherwise."""
        import torch

        return torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None

    def generator(self, offset: int = 0) -> "torch.Generator":  # noqa: F821
        """A fresh generator seeded from the run seed plus `offset` (one per purpose: data, sampling, ...)."""
        import torch

        g = torch.Generator(device=self.device if self.device.type == "cuda" else "cpu")
        g.manual_seed(self.seed + offset)
        return g

    def describe(self) -> str:
        world = f", {self.dist.world_size} processes" if self.dist.world_size > 1 else ""
        return f"device {self.device}, precision {self.precision}{self._matmuls()}, seed {self.seed}{world}"

    def _matmuls(self) -> str:
        """What `matmul_precision` does on this device, when it does more than full fp32."""
        import torch

        if self.precision != "fp32" or self.matmul_precision == "highest":
            return ""
        if self.device.type == "cuda":
            return " (TF32 matmuls)"
        if self.device.type == "cpu" and self.matmul_precision == "medium":
            # "may": oneDNN decides per product (an AMX Xeon takes bf16 inputs for small ones; an AVX512-BF16
            # EPYC was seen to keep a 64 x 48 product exact)
            return (" (fp32 matmuls may take bf16 inputs)" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else
                    " (matmul_precision 'medium': no bf16 hardware on this CPU, matmuls stay fp32)")
        return ""


def resolve_device(name: str, local_rank: int = 0) -> "torch.device":  # noqa: F821
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise LlmfsError(f"run.device = '{name}' but CUDA is not available here; use 'auto' or 'cpu'")
        index = int(name.split(":")[1]) if ":" in name else local_rank
        if index >= torch.cuda.device_count():
            raise LlmfsError(f"run.device = '{name}' but only {torch.cuda.device_count()} CUDA devices exist")
        return torch.device("cuda", index)
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise LlmfsError("run.device = 'mps' but MPS is not available here; use 'auto' or 'cpu'")
    return torch.device(name)


def resolve_precision(precision: str, device: "torch.device") -> str:  # noqa: F821
    import torch

    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise LlmfsError(f"run.precision = 'fp16' needs CUDA (it runs with a GradScaler), but the device is "
                         f"{device.type}; use 'fp32' or 'bf16'")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise LlmfsError("run.precision = 'bf16' but this GPU has no bf16 support; use 'fp16' or 'fp32'")
    return precision


def seed_everything(seed: int) -> None:
    """Seed python's `random`, numpy and torch (all devices). Explicit generators are still preferred."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup(cfg: RunConfig, *, device: str | None = None, precision: str | None = None) -> Runtime:
    """Resolve `[run]` (with optional CLI overrides of device / precision) into a Runtime; join the process
    group when launched by torchrun."""
    import torch

    dist = dist_env()
    dev = resolve_device(device or cfg.device, dist.local_rank)
    prec = resolve_precision(precision or cfg.precision, dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    # Both settings below are process-wide: keep what was there so teardown can put it back (a Python user who
    # calls a stage from a notebook or script gets their own settings back afterwards; the next stage's setup
    # sets its own [run] either way).
    restore = (torch.get_float32_matmul_precision(), torch.are_deterministic_algorithms_enabled(),
               torch.is_deterministic_algorithms_warn_only_enabled())
    # TF32 on Ampere+ (~8x fp32 speed) for high / medium; bf16-input matmuls on CPUs with bf16 units for medium
    torch.set_float32_matmul_precision(cfg.matmul_precision)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by cuBLAS for determinism
        torch.use_deterministic_algorithms(True)
    if dist.world_size > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend, rank=dist.rank, world_size=dist.world_size,
                                             device_id=dev if dev.type == "cuda" else None)
    seed_everything(cfg.seed)
    return Runtime(device=dev, precision=prec, dist=dist, seed=cfg.seed, matmul_precision=cfg.matmul_precision,
                   restore=restore)


def teardown(rt: Runtime) -> None:
    """Leave the process group (if this run joined one) and put back the process-wide settings `setup` changed."""
    import torch

    if rt.restore is not None:
        matmul_precision, deterministic, warn_only = rt.restore
        torch.set_float32_matmul_precision(matmul_precision)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)

    if rt.dist.world_size > 1 and torch.distributed.is_initialized():
        if torch.distributed.get_backend() == "gloo":
            # leave together: a gloo process that tore its group down while another still finished its last
            # collective was seen to abort ("terminate called without an active exception"); bounded, so a rank
            # that died does not keep the others here
            import datetime

            try:
                torch.distributed.monitored_barrier(timeout=datetime.timedelta(seconds=60))
            except RuntimeError:
                pass
        torch.distributed.destroy_process_group()
