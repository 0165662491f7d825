"""Optimizers: torch's AdamW (fused on CUDA, foreach elsewhere) or llmfs's own readable AdamW.

Parameters are split into two groups, as in GPT-2 / nanoGPT: matrices and embeddings (dim >= 2) get weight
decay, biases and norm gains (dim < 2) do not (decaying a gain towards 0 fights the normalisation).

`AdamWScratch` is AdamW written out (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization",
Algorithm 2), operation for operation in the order of `torch.optim.AdamW`'s single-tensor path, so a test can
prove the two equal. It is the teaching path; torch's is the fast one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Literal

import torch

from llmfs.config import option


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """The `[optim]` section."""

    name: Literal["adamw", "adamw_scratch"] = "adamw"
    lr: float = option(3e-4, gt=0)
    betas: tuple[float, float] = option((0.9, 0.95), ge=0, lt=1)
    eps: float = option(1e-8, gt=0)
    weight_decay: float = option(0.1, ge=0)
    grad_clip: float = option(1.0, ge=0, doc="clip the global grad norm to this; 0 disables clipping")


class AdamWScratch(torch.optim.Optimizer):
    """AdamW, readable. Per parameter p with gradient g at step t (1-based):

        p <- p * (1 - lr * weight_decay)                      decoupled decay, before the moment update
        m <- beta1 * m + (1 - beta1) * g                       first moment (torch writes it as a lerp)
        v <- beta2 * v + (1 - beta2) * g * g                   second moment
        p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                t = state["step"].item()
                p.mul_(1 - lr * wd)
                m.lerp_(g, 1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                step_size = lr / (1 - beta1**t)
                denom = (v.sqrt() / math.sqrt(1 - beta2**t)).add_(eps)
                p.addcdiv_(m, denom, value=-step_size)
        return loss


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay for dim >= 2 (matmul weights, embeddings), none for biases and norm gains; tied weights once."""
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig, device: torch.device) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.name == "adamw_scratch":
        return AdamWScratch(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    # one fused kernel for all parameters on CUDA and CPU (CPU: 1.07x the foreach step time of a whole nanoGPT-
    # shape training step, docs/bench/nanogpt.md); foreach (a few kernels per group) elsewhere
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused or None,
                             foreach=None if fused else True)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
