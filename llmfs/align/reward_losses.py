"""Pairwise reward-model losses: small pure functions of the chosen and rejected rewards, each (B,).

- Bradley-Terry (Bradley & Terry 1952; Ouyang et al. 2022, eq. 1): the probability that the chosen reply wins
  is sigmoid(r_c - r_r); the loss is its negative log, -log sigmoid(r_c - r_r), computed as
  -logsigmoid(...) (`F.logsigmoid` never forms exp of a large positive number, so huge margins give 0, not NaN).
- Margin ranking: max(0, m - (r_c - r_r)): zero once the chosen reward leads by the margin m, linear below it.
  m is one number or one per pair (B,) (Llama 2's preference-strength margin, Touvron et al. 2023, eq. 2, adds
  a per-pair margin inside the Bradley-Terry sigmoid; here it is the hinge's margin).
- Reward centering (Eisenstein et al. 2023, "Helping or Herding?", section 3): coef * mean((r_c + r_r)^2),
  which pins the scale's free offset: the pairwise losses only see differences, so without it the mean reward
  drifts; with it a pair's rewards sum to about zero and the reward is comparable across prompts.
- Language-model regularisation (Yang et al. 2024, "Regularizing Hidden States Enables Learning Generalizable
  Reward Model for LLMs", the SFT regulariser): coef * the next-token cross-entropy of the chosen replies, read
  from the same final hidden states through the parent's lm_head. The pairwise loss alone lets fine-tuning
  overwrite what the backbone knew (whether 58 + 7 is 65, who went to the park); keeping it predicting the good
  replies keeps that knowledge where the head can read it.

Every function returns the mean over the pairs of the batch (a scalar).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("bradley_terry", "margin")  # RewardConfig.loss is a Literal of the same names (a test keeps them equal)


def bradley_terry(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """mean(-log sigmoid(r_c - r_r)); chosen, rejected (B,)."""
    return -F.logsigmoid(chosen.float() - rejected.float()).mean()


def margin_ranking(chosen: torch.Tensor, rejected: torch.Tensor, margin: float | torch.Tensor = 1.0) -> torch.Tensor:
    """mean(max(0, m - (r_c - r_r))); margin a number or (B,)."""
    return F.relu(margin - (chosen.float() - rejected.float())).mean()


def centering(chosen: torch.Tensor, rejected: torch.Tensor, coef: float) -> torch.Tensor:
    """coef * mean((r_c + r_r)^2)."""
    return coef * (chosen.float() + rejected.float()).pow(2).mean()


def reply_lm_loss(hidden: torch.Tensor, lm_weight: torch.Tensor, targets: torch.Tensor,
                  reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy over the targeted positions, their mean (or "sum"): hidden (B, T, D) final-norm
    states, lm_weight (V, D) the lm_head matrix, targets (B, T) the next id or -100 where nothing is predicted."""
    logits = F.linear(hidden, lm_weight)  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100, reduction=reduction)


def pairwise_loss(chosen: torch.Tensor, rejected: torch.Tensor, *, loss: str, margin: float | torch.Tensor = 1.0,
                  center_coef: float = 0.0) -> torch.Tensor:
    """The training loss of `[reward]`: the pairwise term named by `loss`, plus centering when coef > 0."""
    if loss == "bradley_terry":
        main = bradley_terry(chosen, rejected)
    elif loss == "margin":
        main = margin_ranking(chosen, rejected, margin)
    else:
        raise ValueError(f"unknown reward loss {loss!r}; expected one of {LOSSES}")
    return main + centering(chosen, rejected, center_coef) if center_coef > 0 else main
