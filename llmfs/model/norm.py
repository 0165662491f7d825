"""Normalisation layers: LayerNorm (Ba et al. 2016) and RMSNorm (Zhang & Sennrich 2019).

Both compute in (at least) float32 and cast back to the input dtype: the mean of squares overflows or loses
precision in fp16/bf16 (HF Llama's `LlamaRMSNorm` does the same). Constructor signature for every kind:
(dim, eps, bias).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.Module):
    """y = (x - mean) / sqrt(var + eps) * weight (+ bias), over the last dim, in float32 (F.layer_norm's fused
    kernel computes exactly this formula)."""

    def __init__(self, dim: int, eps: float, bias: bool):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., D) -> (..., D)
        dt = torch.promote_types(x.dtype, torch.float32)  # at least fp32; float64 stays float64
        bias = None if self.bias is None else self.bias.to(dt)
        return F.layer_norm(x.to(dt), self.weight.shape, self.weight.to(dt), bias, self.eps).to(x.dtype)


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight, in float32. No mean subtraction and no bias: RMSNorm has none
    (the `bias` argument is accepted for the shared constructor signature and must be False)."""

    def __init__(self, dim: int, eps: float, bias: bool):
        super().__init__()
        if bias:
            raise ValueError("RMSNorm has no bias; ModelConfig.bias only adds biases to linears and LayerNorm")
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., D) -> (..., D)
        # Written out rather than F.rms_norm: on CPU that is a composite of more kernels (~20% slower, fwd+bwd).
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # at least fp32; float64 stays float64
        y = xf * torch.rsqrt((xf * xf).mean(-1, keepdim=True) + self.eps)  # (..., D) / rms over D
        return (y * self.weight.to(xf.dtype)).to(x.dtype)


NORMS = {"layernorm": LayerNorm, "rmsnorm": RMSNorm}


def build_norm(kind: str, dim: int, eps: float, bias: bool) -> nn.Module:
    """The norm named `kind`; RMSNorm never has a bias, whatever `bias` says about the linear layers."""
    return NORMS[kind](dim, eps, bias and kind == "layernorm")
