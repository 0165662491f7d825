"""Position-wise feed-forward networks. Constructor signature for every kind: (d_model, d_ff, bias).

- gelu: down(GELU(up(x))), exact erf GELU (Hendrycks & Gimpel 2016), as nanoGPT's `nn.GELU()`.
- gelu_tanh: the same with GELU's tanh approximation, which GPT-2 uses (HF `gelu_new`); exists so GPT-2
  checkpoints import exactly.
- swiglu: down(SiLU(gate(x)) * up(x)) (Shazeer 2020, "GLU Variants Improve Transformer"; Llama).
- relu2: down(ReLU(up(x))^2) (So et al. 2021, "Primer").
Weight names follow HF Llama: gate_proj / up_proj / down_proj; the non-gated kinds have up / down only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GeluMLP(nn.Module):
    approximate = "none"

    def __init__(self, d_model: int, d_ff: int, bias: bool):
        super().__init__()
        self.up_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.down_proj = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., D) -> (..., D)
        return self.down_proj(F.gelu(self.up_proj(x), approximate=self.approximate))


class GeluTanhMLP(GeluMLP):
    approximate = "tanh"


class SwiGLUMLP(nn.Module):
    def __init__(self, d_model: int, d_ff: int, bias: bool):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.up_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.down_proj = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Two GEMMs, not one on concatenated weights: measured faster on CPU (no weight cat, no grad cat).
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class ReLU2MLP(nn.Module):
    def __init__(self, d_model: int, d_ff: int, bias: bool):
        super().__init__()
        self.up_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.down_proj = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.relu(self.up_proj(x)).square())


MLPS = {"gelu": GeluMLP, "gelu_tanh": GeluTanhMLP, "swiglu": SwiGLUMLP, "relu2": ReLU2MLP}
