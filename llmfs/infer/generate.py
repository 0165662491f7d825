"""Batched generation: prefill the prompts, then decode one token per step over the static KV cache.

Prompts of different lengths are right-padded into one batch; after the prefill, `cache.trim(lengths)` frees
each row's pad slots so its next token is written right after its own prompt (see `StaticKVCache`). Each row
stops at its end-of-text id (or any id in `stop_ids`) or after `max_new_tokens`; finished rows keep decoding
pads (cheap, and it keeps the batch rectangular) but nothing more is recorded for them.
`use_cache=False` re-runs the full forward for every token: the teaching path, and the oracle the cached path
is tested against.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from llmfs.infer.sampling import SamplingConfig, sample_next
from llmfs.model.kv_cache import StaticKVCache


def _last_logits(logits: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """logits (B, T, V), lengths (B,) -> the logits at each row's last real token (B, V)."""
    return logits[torch.arange(logits.shape[0], device=logits.device), lengths - 1]


@torch.no_grad()
def generate(model: torch.nn.Module, prompts: Sequence[Sequence[int]], cfg: SamplingConfig, *,
             generator: torch.Generator | None = None, stop_ids: Sequence[int] = (), use_cache: bool = True,
             pad_id: int = 0) -> list[list[int]]:
    """The new tokens of each prompt (stop id included when one ends the row)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    mcfg = model.cfg
    device = next(model.parameters()).device
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    longest = int(lengths.max())
    budget = cfg.max_new_tokens
    if mcfg.position == "learned":  # no positions past max_seq_len
        budget = min(budget, mcfg.max_seq_len - longest)
    if budget <= 0:
        return [[] for _ in prompts]
    B = len(prompts)
    batch = torch.full((B, longest), pad_id, dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        batch[i, : len(p)] = torch.tensor(p, dtype=torch.long, device=device)
    counts = torch.zeros(B, mcfg.vocab_size, device=device)
    stop = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    out: list[list[int]] = [[] for _ in prompts]
    was_training = model.training
    model.eval()
    try:
        if use_cache:
            dtype = next(model.parameters()).dtype
            cache = StaticKVCache(mcfg, B, max_len=longest + budget, device=device, dtype=dtype)
            logits = _last_logits(model(batch, cache=cache).logits, lengths)
            cache.trim(lengths)
        else:
            logits = _last_logits(model(batch).logits, lengths)
        for _ in range(budget):
            nxt = sample_next(logits, cfg, generator, counts)  # (B,)
            for i in torch.nonzero(~done).flatten().tolist():
                out[i].append(int(nxt[i]))
            counts[torch.arange(B, device=device), nxt] += (~done).float()
            done |= torch.isin(nxt, stop)
            if bool(done.all()):
                break
            if use_cache:
                logits = model(nxt[:, None], cache=cache).logits[:, -1]
            else:
                lengths = lengths + 1
                grown = torch.full((B, int(lengths.max())), pad_id, dtype=torch.long, device=device)
                grown[:, : batch.shape[1]] = batch
                grown[torch.arange(B, device=device), lengths - 1] = nxt
                batch = grown
                logits = _last_logits(model(batch).logits, lengths)
    finally:
        model.train(was_training)
    return out
