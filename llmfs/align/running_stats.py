"""Running mean and standard deviation of rewards, for PPO's reward normalisation.

Batches are merged with Chan et al.'s parallel update (1979), exact for any batch sizes. The state starts from
the reward model's held-out statistics (`reward_mean`, `reward_std` in its checkpoint) counted as `prior` samples,
so the first iterations normalise sensibly instead of by one batch's noise.
"""

from __future__ import annotations

import dataclasses
import math

import torch


@dataclasses.dataclass
class RunningStats:
    mean: float = 0.0
    var: float = 1.0
    count: float = 0.0

    def update(self, x: torch.Tensor) -> None:
        n = x.numel()
        if n == 0:
            return
        b_mean, b_var = float(x.mean()), float(x.var(unbiased=False)) if n > 1 else 0.0
        total = self.count + n
        delta = b_mean - self.mean
        m2 = self.var * self.count + b_var * n + delta ** 2 * self.count * n / total
        self.mean += delta * n / total
        self.var, self.count = m2 / total, total

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 1e-12))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
