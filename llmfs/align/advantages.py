"""Advantages: GAE for PPO (a learned value baseline) and group-relative advantages for GRPO (a sampled one).

All per-token tensors are (B, T) over a right-padded batch with `mask` (B, T) marking the response tokens; the
position t holds the action "emit token t" taken in the state "everything before it".
"""

from __future__ import annotations

import torch


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float, lam: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16):

        delta_t = r_t + gamma * V_{t+1} - V_t,    A_t = delta_t + gamma * lam * A_{t+1},    returns_t = A_t + V_t

    computed backwards over time. Outside the mask rewards and values count as 0, so the value after a
    response's last token is 0 (the episode ends there) and padding never leaks into an advantage.
    Returns (advantages, returns), both 0 outside the mask."""
    rewards, values = rewards * mask, values * mask
    B, T = rewards.shape
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)  # A_{t+1}; 0 past the end
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def group_advantages(rewards: torch.Tensor, group_size: int, *, scale: str = "group", eps: float = 1e-6
                     ) -> torch.Tensor:
    """GRPO (Shao et al. 2024): rewards (N,) of N = prompts * group_size completions, grouped consecutively ->
    (r - mean of its group) / (std + eps), with std the group's (`scale = "group"`, the paper), the whole
    batch's (`"batch"`), or no division (`"none"`, Dr. GRPO, Liu et al. 2025). std is the unbiased sample std.
    group_size = 1 has no group to compare with: `"none"` subtracts no baseline (REINFORCE: the reward itself),
    `"batch"` whitens over the batch ((r - batch mean) / batch std: REINFORCE with the batch mean as baseline;
    dividing uncentred rewards by a small std would blow them up), and `"group"`, with no spread to divide by, is
    refused."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    if group_size == 1 and scale == "group":
        raise ValueError("scale 'group' needs group_size >= 2 (a group of one has no spread); use 'batch' or 'none'")
    groups = rewards.view(-1, group_size)  # (P, G)
    if group_size > 1:
        centred = (groups - groups.mean(dim=1, keepdim=True)).flatten()
    else:  # a reply's own reward as its baseline would leave nothing
        centred = rewards - rewards.mean() if scale == "batch" else rewards.clone()
    if scale == "none":
        return centred
    if scale == "group":
        std = groups.std(dim=1, keepdim=True).expand_as(groups).flatten()
    elif scale == "batch":
        std = rewards.std() if rewards.numel() > 1 else torch.zeros((), dtype=rewards.dtype)
    else:
        raise ValueError(f"scale must be 'group', 'batch' or 'none', got {scale!r}")
    std = torch.as_tensor(std, dtype=rewards.dtype).expand_as(centred)
    return torch.where(std > 0, centred / (std + eps), torch.zeros_like(centred))  # equal rewards: no signal


def zero_variance_groups(rewards: torch.Tensor, group_size: int) -> float:
    """Share of groups whose completions all scored the same (they carry no learning signal)."""
    groups = rewards.view(-1, group_size)
    return float((groups.max(dim=1).values == groups.min(dim=1).values).float().mean())
