"""Causal self-attention: MHA / GQA / MQA through n_kv_heads, two interchangeable kernels, and one mask builder
for sliding windows, attention sinks, packed segments and KV caches.

Kernels (`ATTENTION_IMPLS`), both `(q (B, H, Tq, D), k, v (B, Hkv, Tk, D), mask, dropout_p) -> (B, H, Tq, D)`:
- "manual": softmax(Q K^T / sqrt(D) + mask) V written out (Vaswani et al. 2017, eq. 1): the teaching path and
  the oracle in tests.
- "sdpa": `F.scaled_dot_product_attention`. With no mask it is called with `is_causal=True` (several queries),
  which lets CUDA pick the flash kernel; an explicit boolean mask is passed only when a window, sinks, segments
  or a cache's prefill need one.
`mask` is None or a bool tensor (B|1, 1, Tq, Tk), True = may attend. None means plain causal attention: with
Tq == Tk the usual lower triangle, and with a single query (Tq == 1, a decode step) every key, which is the
causal mask aligned to the query's position at the end (no mask tensor to build or apply per step).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from llmfs.model.config import ModelConfig
from llmfs.model.position import apply_rope


def attention_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, *, window: int | None, n_sinks: int,
                   q_seg: torch.Tensor | None = None, k_seg: torch.Tensor | None = None,
                   k_valid: torch.Tensor | None = None) -> torch.Tensor:
    """Which keys each query may see, from absolute positions (B|1, Tq) and (B|1, Tk).

    causal: k <= q. window W: q - k < W (the query and the W - 1 tokens before it), except that the first
    n_sinks positions stay visible (StreamingLLM, Xiao et al. 2023). segments: same segment id only.
    k_valid: slots of a cache that hold a token. Returns bool (B|1, 1, Tq, Tk).
    """
    q, k = q_pos[:, :, None], k_pos[:, None, :]  # (B, Tq, 1), (B, 1, Tk)
    allowed = k <= q
    if window is not None:
        allowed = allowed & ((q - k < window) | (k < n_sinks))
    if q_seg is not None:
        allowed = allowed & (q_seg[:, :, None] == k_seg[:, None, :])
    if k_valid is not None:
        allowed = allowed & k_valid[:, None, :]
    return allowed[:, None]  # (B, 1, Tq, Tk): broadcast over heads


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, Hkv, T, D) -> (B, Hkv * n_rep, T, D); query head h reads kv head h // n_rep (HF `repeat_kv`)."""
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=1)


def manual_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                     dropout_p: float) -> torch.Tensor:
    n_rep = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
    Tq, Tk = q.shape[2], k.shape[2]
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, H, Tq, Tk)
    if mask is None and Tq > 1:
        mask = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    # softmax in at least float32 (fp16 / bf16 exponentials lose too much), never below the input precision
    probs = torch.softmax(scores, dim=-1, dtype=torch.promote_types(q.dtype, torch.float32)).to(q.dtype)
    if dropout_p > 0:
        probs = F.dropout(probs, p=dropout_p)
    return probs @ v  # (B, H, Tq, D)


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                   dropout_p: float) -> torch.Tensor:
    gqa = q.shape[1] != k.shape[1]
    if mask is None:  # is_causal aligns the triangle top-left, so a single query (sees every key) must not set it
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=q.shape[2] > 1,
                                              enable_gqa=gqa)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, enable_gqa=gqa)


ATTENTION_IMPLS = {"sdpa": sdpa_attention, "manual": manual_attention}


class Attention(nn.Module):
    """Multi-head causal self-attention with separate q/k/v/o projections (HF Llama names)."""

    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.dropout = cfg.dropout
        self.kernel = ATTENTION_IMPLS[cfg.attn_impl]
        d, hd = cfg.d_model, cfg.head_dim
        self.q_proj = nn.Linear(d, cfg.n_heads * hd, bias=cfg.bias)
        self.k_proj = nn.Linear(d, cfg.kv_heads * hd, bias=cfg.bias)
        self.v_proj = nn.Linear(d, cfg.kv_heads * hd, bias=cfg.bias)
        self.o_proj = nn.Linear(cfg.n_heads * hd, d, bias=cfg.bias)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                mask: torch.Tensor | None, cache=None) -> torch.Tensor:
        B, T, _ = x.shape
        H, Hkv, D = self.n_heads, self.n_kv_heads, self.head_dim
        q = self.q_proj(x).view(B, T, H, D)
        k = self.k_proj(x).view(B, T, Hkv, D)
        v = self.v_proj(x).view(B, T, Hkv, D)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H|Hkv, T, D)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, Hkv, Tk, D): cached keys + these
        y = self.kernel(q, k, v, mask, self.dropout if self.training else 0.0)  # (B, H, T, D)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, H * D))
