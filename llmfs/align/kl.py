"""KL divergence to the reference model, estimated per token from samples of the policy, and the adaptive
coefficient that keeps it near a target.

With tokens sampled from the policy pi and r = log ref(x) - log pi(x) (Schulman, "Approximating KL
divergence", 2020):
- k1 = -r: unbiased for KL(pi || ref) but can be negative per token (high variance);
- k3 = (e^r - 1) - r: unbiased as well, and never negative (what GRPO uses, Shao et al. 2024).
"""

from __future__ import annotations

import dataclasses

import torch


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    return logp - ref_logp


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    r = ref_logp - logp
    return torch.expm1(r) - r


KL_ESTIMATORS = {"k1": kl_k1, "k3": kl_k3}


@dataclasses.dataclass
class AdaptiveKL:
    """Ziegler et al. 2019 (section 2.2): after each batch, beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon,
    so the coefficient rises while the policy drifts past the target and falls while it stays under it.
    `target = None` keeps beta fixed."""

    beta: float
    target: float | None
    horizon: int = 10_000  # samples over which a full proportional correction is applied

    def update(self, kl: float, n_samples: int) -> float:
        if self.target is not None and self.target > 0:
            error = min(max(kl / self.target - 1.0, -0.2), 0.2)
            self.beta *= 1.0 + error * n_samples / self.horizon
        return self.beta
