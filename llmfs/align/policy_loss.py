"""The policy-gradient losses of PPO and GRPO, per token, and how a per-token loss becomes one number.

Per-token tensors are (B, T) with `mask` (B, T) marking response tokens. `ratio = exp(logp - old_logp)` compares
the policy being optimised with the one that sampled the rollout; at the first minibatch of a rollout it is 1,
and it moves as later minibatches and epochs reuse the same samples, which is what the clip is for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from llmfs.align.masked import masked_mean


class PolicyLoss(NamedTuple):
    per_token: torch.Tensor  # (B, T) loss before aggregation
    clip_fraction: torch.Tensor  # share of response tokens where the clipped term was the one taken
    approx_kl: torch.Tensor  # k3 estimate of KL(old || new) over response tokens: how far this update moved


def clipped_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                        *, clip_low: float, clip_high: float | None = None) -> PolicyLoss:
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7), as a loss to minimise:
        max(-A * ratio, -A * clip(ratio, 1 - clip_low, 1 + clip_high))
    `clip_high` defaults to `clip_low`; a larger one is DAPO's "clip-higher" (Yu et al. 2025)."""
    clip_high = clip_low if clip_high is None else clip_high
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(unclipped, clipped)
    clip_fraction = masked_mean((clipped > unclipped).float(), mask)
    approx_kl = masked_mean(torch.expm1(log_ratio) - log_ratio, mask)  # k3 with old as the sampler
    return PolicyLoss(per_token, clip_fraction.detach(), approx_kl.detach())


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                       *, clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """0.5 * max((V - R)^2, (V_clipped - R)^2) with V_clipped = V_old + clip(V - V_old, -c, c), masked mean
    (the value clipping of OpenAI baselines' PPO2). Returns (loss, fraction of tokens where the clip bound)."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    a, b = (values - returns) ** 2, (clipped - returns) ** 2
    return 0.5 * masked_mean(torch.maximum(a, b), mask), masked_mean((b > a).float(), mask).detach()


def entropy(logits: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean entropy (nats) of the next-token distributions at the masked positions; logits (B, T, V). The
    distribution is softmax(logits / temperature), the one the policy loss's log-probabilities use
    (`token_logprobs`; sampling may truncate it further with top-p), as TRL divides the logits before its
    entropy."""
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return masked_mean(-(logp.exp() * logp).sum(-1), mask)


# ------------------------------------------------------------------------------------------- aggregation
def token_mean(loss: torch.Tensor, mask: torch.Tensor, max_tokens: int) -> torch.Tensor:
    """Every response token of the batch weighs the same (DAPO, Yu et al. 2025: long replies are not diluted)."""
    return masked_mean(loss, mask)


def sequence_mean(loss: torch.Tensor, mask: torch.Tensor, max_tokens: int) -> torch.Tensor:
    """Mean over each sequence's tokens, then over sequences (GRPO as published, Shao et al. 2024, eq. 3)."""
    return masked_mean(loss, mask, dim=1).mean()


def fixed_length(loss: torch.Tensor, mask: torch.Tensor, max_tokens: int) -> torch.Tensor:
    """Sum over tokens divided by a constant, batch size x max_tokens (Dr. GRPO, Liu et al. 2025: no length
    bias from the normaliser)."""
    return (loss * mask).sum() / (loss.shape[0] * max_tokens)


AGGREGATIONS: dict[str, Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]] = {
    "token": token_mean, "sequence": sequence_mean, "fixed_length": fixed_length}
