"""Rollouts for RL (PPO, GRPO): sample replies to chat prompts with the batched cached decoder of
`llmfs/infer/generate.py`, and lay prompt + reply out as one right-padded batch the policy can be scored on.

Layout, for N sequences of longest length L:
    sequences (N, L)       prompt ids, reply ids (the end-of-turn id included when the reply ended), pads
    mask      (N, L - 1)   1.0 where sequences[:, t + 1] is a reply token: the positions whose logits chose an
                           action; every per-token RL tensor (logprobs, values, rewards, advantages) uses it
    keep      (N, L)       True at each row's prompt and reply tokens, False at its right padding: passed to
                           the policy, reference and value models as `token_mask`, so MoE layers do not route
                           padding (no expert, no capacity slot, no share of the balance losses)
`token_logprobs(model, sequences)` gives log pi(sequences[:, t + 1] | sequences[:, :t + 1]) at the same positions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from llmfs.infer.generate import complete
from llmfs.infer.sampling import SamplingConfig


@dataclasses.dataclass
class Rollout:
    sequences: torch.Tensor  # (N, L) long
    mask: torch.Tensor  # (N, L - 1) float
    prompt_lengths: list[int]
    replies: list[list[int]]  # reply ids, end-of-turn id included when it ended the reply
    ended: torch.Tensor  # (N,) bool: the reply stopped at the end-of-turn id (not cut by max_new_tokens)
    texts: list[str]  # the replies decoded, end-of-turn id left out

    @property
    def reply_lengths(self) -> torch.Tensor:
        return self.mask.sum(1)

    @property
    def keep(self) -> torch.Tensor:
        """(N, L) bool, False at padding (module docstring)."""
        return token_keep([p + len(r) for p, r in zip(self.prompt_lengths, self.replies)], self.sequences.shape[1],
                          self.sequences.device)


def token_keep(lengths: Sequence[int], width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, width) bool: True at the first lengths[i] positions of row i (its tokens), False after (padding)."""
    return torch.arange(width, device=device)[None] < torch.tensor(list(lengths), device=device)[:, None]


def layout(prompts: Sequence[Sequence[int]], replies: Sequence[Sequence[int]], pad_id: int,
           device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(sequences (N, L), mask (N, L - 1)) for prompt + reply pairs; see the module docstring."""
    L = max(len(p) + len(r) for p, r in zip(prompts, replies))
    sequences = torch.full((len(prompts), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), L - 1))
    for i, (p, r) in enumerate(zip(prompts, replies)):
        sequences[i, :len(p) + len(r)] = torch.tensor([*p, *r], dtype=torch.long)
        mask[i, len(p) - 1:len(p) - 1 + len(r)] = 1.0  # logits at p-1 choose reply token 0
    return sequences.to(device), mask.to(device)


@torch.no_grad()
def sample(model: torch.nn.Module, tokenizer, prompts: Sequence[Sequence[int]], cfg: SamplingConfig, *,
           end_id: int, pad_id: int, generator: torch.Generator | None) -> Rollout:
    """One reply per prompt, all in one batch (repeat a prompt G times for a GRPO group)."""
    done = complete(model, prompts, cfg, generator=generator, stop_ids=[end_id], pad_id=pad_id)
    replies = [c.ids for c in done]
    ended = torch.tensor([bool(r) and r[-1] == end_id for r in replies])
    device = next(model.parameters()).device
    sequences, mask = layout(prompts, replies, pad_id, device)
    texts = [tokenizer.decode(r[:-1] if e else r) for r, e in zip(replies, ended.tolist())]
    return Rollout(sequences, mask, [len(p) for p in prompts], replies, ended.to(device), texts)


def token_logprobs(logits: torch.Tensor, sequences: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """logits (N, L, V) of `model(sequences)` -> (N, L - 1) log-probabilities of the next tokens, in float32, under
    the sampling temperature (the distribution the rollout was drawn from; 0 means greedy: taken as 1)."""
    scaled = logits[:, :-1].float() / (temperature if temperature > 0 else 1.0)
    picked = scaled.gather(-1, sequences[:, 1:, None]).squeeze(-1)
    return picked - torch.logsumexp(scaled, dim=-1)


@torch.no_grad()
def score_logprobs(model: torch.nn.Module, sequences: torch.Tensor, *, temperature: float, batch_size: int,
                   autocast=None, keep: torch.Tensor | None = None) -> torch.Tensor:
    """token_logprobs of a whole rollout without gradients, `batch_size` rows per forward; `keep` (N, L) the
    rollout's `keep` (padding is not routed by MoE layers), None: every position is a token."""
    import contextlib

    out = []
    for i in range(0, sequences.shape[0], batch_size):
        rows = sequences[i:i + batch_size]
        with (autocast() if autocast is not None else contextlib.nullcontext()):
            logits = model(rows, token_mask=None if keep is None else keep[i:i + batch_size]).logits
        out.append(token_logprobs(logits, rows, temperature))
    return torch.cat(out)
