"""Sampling: small pure functions on next-token logits, composed in one documented order.

`sample_next` applies, to float32 logits (B, V):
  1. repetition penalty (CTRL, Keskar et al. 2019): a seen token's logit is divided by the penalty when
     positive and multiplied by it when negative;
  2. frequency penalty (OpenAI API): minus `penalty * count` for each token already generated;
  3. temperature: logits / T; T = 0 means greedy (argmax of the penalised logits, no randomness);
  4. top-k: keep the k largest;
  5. top-p (nucleus, Holtzman et al. 2020): keep the smallest set whose probability reaches p;
  6. min-p (Nguyen et al. 2024): keep tokens with probability >= min_p * the top probability;
then draws from the softmax with an explicit `torch.Generator`, so a seed reproduces a completion exactly.
This is the order of Hugging Face's `generate` (penalties, temperature, then the truncation filters). The
penalties count the tokens generated so far, not the prompt's (CTRL penalises "previously generated tokens", and
the OpenAI API's frequency penalty counts sampled ones); transformers' `repetition_penalty` also penalises every
prompt token, so the same value gives different text there when the prompt is long.
"""

from __future__ import annotations

import dataclasses

import torch

from llmfs.config import option


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How to pick each next token (the `[sampling]` section and the generate / chat options)."""

    temperature: float = option(1.0, ge=0, doc="0 = greedy")
    top_k: int = option(0, ge=0, doc="0 = off")
    top_p: float = option(1.0, gt=0, le=1, doc="1 = off")
    min_p: float = option(0.0, ge=0, le=1, doc="0 = off")
    repetition_penalty: float = option(1.0, gt=0, doc="1 = off")
    frequency_penalty: float = option(0.0, doc="0 = off")
    max_new_tokens: int = option(128, ge=1)


def repetition_penalty(logits: torch.Tensor, counts: torch.Tensor, penalty: float) -> torch.Tensor:
    """logits, counts (B, V): counts > 0 marks tokens seen so far."""
    if penalty == 1.0:
        return logits
    seen = counts > 0
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def frequency_penalty(logits: torch.Tensor, counts: torch.Tensor, penalty: float) -> torch.Tensor:
    return logits if penalty == 0.0 else logits - penalty * counts.to(logits.dtype)


def top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    # drop a token when the mass *before* it already reaches p (so the top token always stays)
    drop_sorted = (probs.cumsum(-1) - probs) >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def min_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    if p <= 0.0:
        return logits
    probs = logits.softmax(-1)
    threshold = p * probs.max(dim=-1, keepdim=True).values
    return logits.masked_fill(probs < threshold, float("-inf"))


def sample_next(logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None,
                counts: torch.Tensor | None = None) -> torch.Tensor:
    """logits (B, V) -> next ids (B,). `counts` (B, V): how often each token was generated so far."""
    logits = logits.float()
    if counts is not None:
        logits = repetition_penalty(logits, counts, cfg.repetition_penalty)
        logits = frequency_penalty(logits, counts, cfg.frequency_penalty)
    if cfg.temperature == 0:
        return logits.argmax(-1)
    logits = logits / cfg.temperature
    logits = min_p(top_p(top_k(logits, cfg.top_k), cfg.top_p), cfg.min_p)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
