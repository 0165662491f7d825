"""Mixture-of-experts feed-forward layer: softmax router, top-k, capacity, load-balancing and z losses.

Follows Switch Transformer (Fedus et al. 2021) / GShard (Lepikhin et al. 2020) for routing and the aux loss,
ST-MoE (Zoph et al. 2022) for the router z-loss, DeepSeek-MoE (Dai et al. 2024) for the shared expert.
Departures, all deliberate:
- top-k weights are renormalised to sum to 1 over the chosen experts (Mixtral), also for top_k = 1 (so one
  expert with top-1 is exactly the dense MLP).
- the aux loss counts all top-k assignments: f_i = (assignments to i) / (tokens * top_k), before capacity
  dropping, so perfectly balanced routing gives aux = 1 for any k.
- capacity = ceil(capacity_factor * tokens * top_k / n_experts) per expert per forward call; when an expert
  overflows, first choices win over second choices, then earlier tokens over later ones (GShard's priority).
  A dropped assignment contributes nothing; the token keeps its residual (and its other experts).
  Capacity depends on how many tokens share the forward call, so with a capacity_factor cached decoding (one
  token at a time) can differ from a full forward by design; without one they agree exactly.
Dispatch is vectorised: assignments are sorted by expert, each expert runs once on its contiguous slice, and
results are scattered back with index_add_. The loop is over experts, never over tokens.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from llmfs.model.config import ModelConfig
from llmfs.model.mlp import MLPS


@dataclasses.dataclass
class MoEStats:
    aux_loss: torch.Tensor  # () n_experts * sum_i f_i P_i, unweighted
    z_loss: torch.Tensor  # () mean over tokens of logsumexp(router logits)^2, unweighted
    expert_load: torch.Tensor  # (E,) fraction of assignments sent to each expert (sums to 1)
    dropped: torch.Tensor  # () int: assignments dropped by the capacity limit


def router_losses(logits: torch.Tensor, chosen: torch.Tensor, n_experts: int) -> tuple[torch.Tensor, ...]:
    """logits (N, E) float32, chosen (N, k) expert ids -> (aux, z, load (E,)).

    aux = E * sum_i f_i * P_i with f_i the fraction of the N * k assignments given to expert i (not
    differentiable) and P_i the mean router probability of expert i (differentiable): the gradient pushes
    probability away from overloaded experts. z = mean_n logsumexp(logits_n)^2 keeps logits small.
    """
    probs = logits.softmax(dim=-1)  # (N, E)
    counts = torch.bincount(chosen.flatten(), minlength=n_experts).to(logits.dtype)  # (E,)
    load = counts / chosen.numel()  # f_i
    aux = n_experts * (load * probs.mean(dim=0)).sum()
    z = torch.logsumexp(logits, dim=-1).square().mean()
    return aux, z, load


class MoE(nn.Module):
    """Routed experts (+ optional shared expert). Each expert is the configured MLP kind with width d_ff."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_experts, self.top_k, self.capacity_factor = cfg.n_experts, cfg.top_k, cfg.capacity_factor
        mlp = MLPS[cfg.mlp]
        self.router = nn.Linear(cfg.d_model, cfg.n_experts, bias=False)
        self.experts = nn.ModuleList(mlp(cfg.d_model, cfg.ffn_dim, cfg.bias) for _ in range(cfg.n_experts))
        self.shared_expert = mlp(cfg.d_model, cfg.ffn_dim, cfg.bias) if cfg.shared_expert else None

    def capacity(self, n_tokens: int) -> int | None:
        if self.capacity_factor is None:
            return None
        return math.ceil(self.capacity_factor * n_tokens * self.top_k / self.n_experts)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, MoEStats]:
        """x (..., D) -> (..., D), MoEStats. `keep` (...) bool, False at padding: those tokens are left out of
        routing (no expert, no capacity slot, no share of the aux / z losses or the load) and get a zero output;
        HF's Mixtral leaves padding out of its aux loss through the attention mask the same way."""
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # (N, D)
        if keep is None:
            out, stats = self._route(x)
            return out.reshape(shape), stats
        rows = keep.reshape(-1).nonzero().squeeze(1)  # (n,) the real tokens
        routed, stats = self._route(x[rows])
        return x.new_zeros(x.shape).index_copy(0, rows, routed).reshape(shape), stats

    def _route(self, x: torch.Tensor) -> tuple[torch.Tensor, MoEStats]:
        """x (N, D) -> (N, D), MoEStats over these N tokens."""
        N, k, E = x.shape[0], self.top_k, self.n_experts
        logits = self.router(x).to(torch.promote_types(x.dtype, torch.float32))  # (N, E); routing in >= fp32
        weights, chosen = logits.softmax(dim=-1).topk(k, dim=-1)  # (N, k), (N, k)
        weights = weights / weights.sum(dim=-1, keepdim=True)  # renormalise over the chosen k
        aux, z, load = router_losses(logits, chosen, E)

        # Assignments in priority order: choice-major (all first choices, then all second choices ...).
        expert = chosen.t().reshape(-1)  # (k*N,)
        token = torch.arange(N, device=x.device).repeat(k)  # (k*N,)
        gate = weights.t().reshape(-1)  # (k*N,)
        order = torch.sort(expert, stable=True).indices  # group by expert, priority kept inside a group
        expert, token, gate = expert[order], token[order], gate[order]
        counts = torch.bincount(expert, minlength=E)  # (E,)
        starts = torch.cumsum(counts, 0) - counts  # (E,) first slot of each expert's group
        cap = self.capacity(N)
        dropped = torch.zeros((), dtype=torch.long, device=x.device)
        if cap is not None:
            rank = torch.arange(expert.numel(), device=x.device) - starts[expert]  # place in its expert's queue
            keep = rank < cap
            dropped = (~keep).sum()
            expert, token, gate = expert[keep], token[keep], gate[keep]
            counts = counts.clamp(max=cap)

        out = torch.zeros_like(x)  # (N, D)
        bounds = [0] + torch.cumsum(counts, 0).tolist()  # host copy: the expert loop needs slice bounds
        for e, expert_mlp in enumerate(self.experts):
            lo, hi = bounds[e], bounds[e + 1]
            if hi == lo:
                continue
            idx = token[lo:hi]
            y = expert_mlp(x[idx]) * gate[lo:hi, None].to(x.dtype)  # (n_e, D)
            out.index_add_(0, idx, y)
        if self.shared_expert is not None:
            out = out + self.shared_expert(x)
        return out, MoEStats(aux, z, load, dropped)
