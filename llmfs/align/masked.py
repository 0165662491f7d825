"""Statistics over the response tokens of a padded batch: every RL quantity is averaged or normalised over the
positions a mask marks, never over padding or prompt tokens."""

from __future__ import annotations

import torch


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    return (x * mask).sum() if dim is None else (x * mask).sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x where mask is 1 (over everything, or along `dim`); 0 where the mask is empty."""
    return masked_sum(x, mask, dim) / (mask.sum() if dim is None else mask.sum(dim)).clamp_min(1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance of the masked entries (Bessel's correction, as `torch.var`)."""
    n = mask.sum()
    mean = masked_mean(x, mask)
    return masked_sum((x - mean) ** 2, mask) / (n - 1).clamp_min(1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, *, shift_mean: bool = True, eps: float = 1e-8
                  ) -> torch.Tensor:
    """(x - mean) / std over the masked entries (mean kept when not `shift_mean`); padding becomes 0."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask
