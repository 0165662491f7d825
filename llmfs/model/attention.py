"""Causal self-attention: MHA / GQA / MQA through n_kv_heads, two interchangeable kernels, and one mask builder
for sliding windows, attention sinks, packed segments and KV caches.

Kernels (`ATTENTION_IMPLS`), both `(q (B, H, Tq, D), k, v (B, Hkv, Tk, D), mask, dropout_p) -> (B, H, Tq, D)`:
- "manual": softmax(Q K^T / sqrt(D) + mask) V written out (Vaswani et al. 2017, eq. 1): the teaching path and
  the oracle in tests.
- "sdpa": `F.scaled_dot_product_attention`. With no mask it is called with `is_causal=True` (several queries),
  which lets CUDA pick the flash kernel; an explicit boolean mask is passed only when a window, sinks, segments
  or a cache's prefill need one.
On CPU, `sdpa` always runs its matmuls in exact fp32, also when `run.matmul_precision = "medium"` lets every other
fp32 matmul use bf16 inputs (`ExactFP32SDPA`): torch's CPU flash-attention kernel is ~10x slower in that mode.
`mask` is None or a bool tensor (B|1, 1, Tq, Tk), True = may attend. None means plain causal attention: with
Tq == Tk the usual lower triangle, and with a single query (Tq == 1, a decode step) every key, which is the
causal mask aligned to the query's position at the end (no mask tensor to build or apply per step).
"""

from __future__ import annotations

import contextlib
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


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
          dropout_p: float) -> torch.Tensor:
    gqa = q.shape[1] != k.shape[1]
    if mask is None:  # is_causal aligns the triangle top-left, so a single query (sees every key) must not set it
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=q.shape[2] > 1,
                                              enable_gqa=gqa)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, enable_gqa=gqa)


@torch.compiler.assume_constant_result
def _matmul_precision_is_medium() -> bool:
    # Why a decorated helper: torch 2.13's dynamo breaks the graph on `torch.get_float32_matmul_precision()` (a
    # torch function returning a str), which cost a break per layer in every compiled CPU model (the compiled
    # decode step, train.compile). As an assumed-constant result it is read once, when the graph is traced: a
    # graph traced under "high" keeps exact matmuls if the precision later becomes "medium" (and the reverse);
    # only a change from or to "highest" retraces (dynamo guards the TF32 flag that setting changes). llmfs sets
    # the precision once, at a stage's start (runtime.py), before anything is compiled. Not the mkldnn flag:
    # dynamo breaks on that too.
    return torch.get_float32_matmul_precision() == "medium"


def cpu_matmuls_in_bf16(x: torch.Tensor) -> bool:
    """True when fp32 matmuls on x may run with bf16 inputs: a CPU fp32 tensor under `torch.set_float32_matmul_
    precision("medium")` (`run.matmul_precision`; oneDNN's "bf32" mode, which only CPUs with bf16 units act on)."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and _matmul_precision_is_medium()


@contextlib.contextmanager
def exact_fp32_matmuls():
    """CPU fp32 matmuls in full fp32 inside the block, whatever the global matmul precision (restored after)."""
    mkldnn = torch.backends.mkldnn.matmul
    before = mkldnn.fp32_precision
    mkldnn.fp32_precision = "ieee"
    try:
        yield
    finally:
        mkldnn.fp32_precision = before


def _detached(t: torch.Tensor) -> torch.Tensor:  # a new tensor object: packing `t` itself would make a cycle
    return t.detach()                              # out -> out.grad_fn -> out, never freed (torch's hooks notes)


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


class ExactFP32SDPA(torch.autograd.Function):
    """`_sdpa` forward and backward under `exact_fp32_matmuls`.

    Why: with fp32 matmuls allowed to use bf16 inputs, torch 2.13's CPU flash-attention kernel (forward and
    backward) takes ~10x longer: one (12, 4, 64, 32) causal forward + backward 8.7 ms against 0.89 ms here (and
    a (768, 128) @ (128, 512) product 0.12 ms against 0.31 ms, which is what the mode is for). The kernel reads
    the global mode when it runs, and the backward runs later inside the autograd engine, so a context around
    the forward call is not enough: the forward records its own small graph under the exact mode and the
    backward differentiates that graph under the exact mode again. The result equals exact-mode sdpa bit for
    bit, forward and gradients (tests/model/test_attention.py).
    """

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                dropout_p: float) -> torch.Tensor:
        # The inner graph's own saved tensors stay out of any saved-tensor hooks around this call (activation
        # checkpointing, offloading, activation counting): those hooks see what this Function saves, below.
        with torch.enable_grad(), exact_fp32_matmuls(), torch.autograd.graph.saved_tensors_hooks(_detached, _same):
            inner = [t.detach().requires_grad_(t.requires_grad) for t in (q, k, v)]
            y = _sdpa(*inner, mask, dropout_p)
        # Saved like any saved tensor (freed after backward, seen by saved-tensor hooks): y carries the inner graph
        # and with it what sdpa's own backward needs (q, k, v, out, logsumexp).
        ctx.save_for_backward(y, *inner)
        return y.detach()

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        if torch.is_grad_enabled():  # create_graph=True: a gradient of this gradient was asked for
            # once_differentiable would only raise when gy itself needs a gradient and otherwise drop the second-
            # order term silently; sdpa's CPU kernel has no double backward in exact mode either (torch raises
            # "derivative for ..._flash_attention_for_cpu_backward is not implemented"), so say so here, now.
            raise RuntimeError("double backward (create_graph=True) through sdpa attention is not supported on "
                               "CPU; use model.attn_impl = 'manual' for higher-order gradients")
        y, *inner = ctx.saved_tensors
        wanted = [t for t in inner if t.requires_grad]
        with exact_fp32_matmuls():
            # retain: the inner graph lives exactly as long as the saved y, i.e. as the outer graph allows
            grads = iter(torch.autograd.grad(y, wanted, gy, retain_graph=True))
        return (*(next(grads) if t.requires_grad else None for t in inner), None, None)


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                   dropout_p: float) -> torch.Tensor:
    if not cpu_matmuls_in_bf16(q):
        return _sdpa(q, k, v, mask, dropout_p)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        return ExactFP32SDPA.apply(q, k, v, mask, dropout_p)
    with exact_fp32_matmuls():
        return _sdpa(q, k, v, mask, dropout_p)


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
