"""Validation loss and bits per byte.

Bits per byte (BPB) makes models with different tokenizers comparable: the summed next-token loss in nats,
divided by ln 2 and by the number of UTF-8 bytes the scored tokens stand for. As in nanochat's
`evaluate_bpb`, target tokens that stand for no bytes (special tokens such as end-of-text) are left out of both
sums: they carry no text, and a byte tokenizer and a BPE agree on everything else.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def token_byte_lengths(tokenizer, vocab_size: int) -> torch.Tensor:
    """(V,) UTF-8 bytes each id stands for; 0 for special tokens and ids the tokenizer does not have."""
    lengths = torch.zeros(vocab_size, dtype=torch.long)
    specials = set(getattr(tokenizer, "special_ids", {}) or {})
    for i in range(min(vocab_size, tokenizer.vocab_size)):
        if i not in specials:
            lengths[i] = len(tokenizer.token_bytes(i))
    return lengths


@torch.no_grad()
def evaluate_lm(model: torch.nn.Module, windows: np.ndarray, byte_lengths: torch.Tensor, *, batch_size: int,
                device: torch.device, autocast) -> dict[str, float]:
    """windows (N, T + 1) int64 -> {"loss": nats per token, "bpb": bits per byte} over every window."""
    was_training = model.training
    model.eval()
    nats = torch.zeros((), dtype=torch.float64)
    tokens = 0
    n_bytes = 0
    byte_lengths = byte_lengths.to(device)
    try:
        for i in range(0, len(windows), batch_size):
            w = torch.from_numpy(windows[i:i + batch_size]).to(device)
            x, y = w[:, :-1], w[:, 1:]
            with autocast():
                logits = model(x).logits
            nll = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none")  # (B*T,)
            b = byte_lengths[y.flatten()]
            keep = b > 0
            nats += nll[keep].double().sum().cpu()
            tokens += int(keep.sum())
            n_bytes += int(b.sum())
    finally:
        model.train(was_training)
    if tokens == 0:
        return {"loss": math.nan, "bpb": math.nan}
    return {"loss": float(nats) / tokens, "bpb": float(nats) / math.log(2) / max(1, n_bytes)}


def mixture_eval(per_source: dict[str, dict[str, float]], weights: dict[str, float]) -> dict[str, float]:
    """Validation metrics of a data mixture: `val_loss` / `val_bpb` are the per-source values weighted by the
    mixture weights (the expected loss on the training distribution, what a single-source run reports, so curves
    and tables read the same keys), and each source's own values are kept under "SPEC/val_loss", "SPEC/val_bpb"
    when there are several."""
    if len(per_source) == 1:
        (r,) = per_source.values()
        return {"val_loss": r["loss"], "val_bpb": r["bpb"]}
    total = sum(weights[spec] for spec in per_source)
    out = {"val_loss": sum(weights[s] * r["loss"] for s, r in per_source.items()) / total,
           "val_bpb": sum(weights[s] * r["bpb"] for s, r in per_source.items()) / total}
    for spec, r in per_source.items():
        out.update({f"{spec}/val_loss": r["loss"], f"{spec}/val_bpb": r["bpb"]})
    return out
