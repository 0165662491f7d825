"""Naive attention oracles: masks built with Python loops from the rules' plain-English statement, and
attention computed one query at a time. Test oracles only."""

import math

import torch


def loop_mask(T: int, *, window=None, n_sinks=0, segments=None) -> torch.Tensor:
    """(T, T) bool: query i sees key j iff j <= i, and (no window or i - j < window or j < n_sinks), and j is in
    i's segment (segments: a list of T ids)."""
    m = torch.zeros(T, T, dtype=torch.bool)
    for i in range(T):
        for j in range(i + 1):
            in_window = window is None or i - j < window or j < n_sinks
            same = segments is None or segments[i] == segments[j]
            m[i, j] = in_window and same
    return m


def loop_attention(q, k, v, mask) -> torch.Tensor:
    """q (B, H, T, D), k / v (B, Hkv, S, D), mask (T, S) bool -> (B, H, T, D), one query and one head at a time,
    each query head h reading kv head h // (H / Hkv)."""
    B, H, T, D = q.shape
    rep = H // k.shape[1]
    out = torch.zeros_like(q)
    for b in range(B):
        for h in range(H):
            for i in range(T):
                keys = mask[i].nonzero().squeeze(1)
                s = (k[b, h // rep, keys] @ q[b, h, i]) / math.sqrt(D)
                out[b, h, i] = torch.softmax(s, 0) @ v[b, h // rep, keys]
    return out
