"""Scalar heads for reward and value models: Linear(d_model, 1) on the final hidden states.

A reward model reads one score per sequence at a given position (usually its last real token); a value model
(PPO) reads one per position. Named `score` like HF's `LlamaForSequenceClassification.score`.
"""

from __future__ import annotations

import torch
from torch import nn


class ScalarHead(nn.Module):
    def __init__(self, d_model: int, *, bias: bool = True, init_std: float = 0.02,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.score = nn.Linear(d_model, 1, bias=bias)
        with torch.no_grad():
            nn.init.normal_(self.score.weight, 0.0, init_std, generator=generator)
            if bias:
                self.score.bias.zero_()

    def forward(self, hidden: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """hidden (B, T, D) -> (B, T) scores at every position, or (B,) at index (B,) when given."""
        if index is not None:
            hidden = hidden[torch.arange(hidden.shape[0], device=hidden.device), index]  # (B, D)
        return self.score(hidden).squeeze(-1)
