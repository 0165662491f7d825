"""The decoder-only Transformer: embeddings -> n_layers pre-norm blocks -> final norm -> lm_head.

Pre-norm (GPT-2 / Llama): x = x + Attn(Norm(x)); x = x + MLP(Norm(x)); a final norm before the head always.
Parameter names follow HF Llama (embed_tokens, layers.{i}.self_attn.{q,k,v,o}_proj, layers.{i}.mlp.*,
layers.{i}.{input,post_attention}_layernorm, norm, lm_head) so HF export is a renaming; learned positions
live at embed_positions.weight.

Init (GPT-2, Radford et al. 2019, sec. 2.3; nanoGPT): every Linear and Embedding ~ N(0, init_std), biases 0,
norm weights 1, and the projections that write into the residual stream (o_proj, down_proj, including every
expert's) ~ N(0, init_std / sqrt(2 * n_layers)): each block adds two such terms, so the residual's variance
stays O(1) with depth.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from llmfs.model.attention import Attention, attention_mask
from llmfs.model.config import ModelConfig
from llmfs.model.mlp import MLPS
from llmfs.model.moe import MoE
from llmfs.model.norm import build_norm
from llmfs.model.position import POSITIONS, check_positions, positions_from_segments


@dataclasses.dataclass
class TransformerOutput:
    logits: torch.Tensor | None  # (B, T, V); None when return_logits=False
    hidden: torch.Tensor | None  # (B, T, D) after the final norm, when return_hidden=True
    aux_loss: torch.Tensor  # () aux_loss_coef * mean over MoE layers of the load-balancing loss; 0 if dense
    z_loss: torch.Tensor  # () z_loss_coef * mean over MoE layers of the router z-loss; 0 if dense
    expert_load: tuple[torch.Tensor, ...] = ()  # per MoE layer: (E,) fraction of assignments per expert
    dropped: tuple[torch.Tensor, ...] = ()  # per MoE layer: () assignments dropped by capacity


class Block(nn.Module):
    """One pre-norm Transformer block; its MLP is an MoE layer when cfg.is_moe_layer(layer_idx)."""

    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = build_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.self_attn = Attention(cfg, layer_idx)
        self.post_attention_layernorm = build_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.is_moe = cfg.is_moe_layer(layer_idx)
        self.mlp = MoE(cfg) if self.is_moe else MLPS[cfg.mlp](cfg.d_model, cfg.ffn_dim, cfg.bias)
        self.dropout = cfg.dropout

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.dropout, self.training) if self.dropout > 0 else x

    def forward(self, x, rope, mask, cache=None, keep=None):  # x (B, T, D) -> (B, T, D), MoEStats | None
        x = x + self._drop(self.self_attn(self.input_layernorm(x), rope, mask, cache))
        h = self.post_attention_layernorm(x)
        y, stats = self.mlp(h, keep) if self.is_moe else (self.mlp(h), None)
        return x + self._drop(y), stats


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, *, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.embed_positions = POSITIONS[cfg.position](cfg)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = build_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.reset_parameters(generator)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """The depth-scaled GPT-2 init described in the module docstring."""
        std, resid_std = self.cfg.init_std, self.cfg.init_std / math.sqrt(2 * self.cfg.n_layers)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            elif name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, 0.0, resid_std, generator=generator)
            else:
                nn.init.normal_(p, 0.0, std, generator=generator)

    # ------------------------------------------------------------------------------------------ counts
    def num_params(self, exclude_embeddings: bool = False) -> int:
        """Stored parameters (a tied matrix counted once). exclude_embeddings drops the token and position
        embedding tables (Kaplan et al. 2020's N); an untied lm_head stays, it is a matmul on every token."""
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            n -= self.embed_tokens.weight.numel() + sum(p.numel() for p in self.embed_positions.parameters())
        return n

    def active_matmul_params(self) -> int:
        """Weights multiplied per token: attention and MLP projections (top_k routed experts + the shared one +
        the router for MoE layers) and lm_head. Norms, biases and embedding lookups cost O(D) and are left out."""
        c = self.cfg
        attn = c.d_model * c.head_dim * (2 * c.n_heads + 2 * c.kv_heads)
        mlp = (3 if c.mlp == "swiglu" else 2) * c.d_model * c.ffn_dim
        total = c.d_model * c.vocab_size
        for i in range(c.n_layers):
            experts = (c.top_k + int(c.shared_expert)) if c.is_moe_layer(i) else 1
            total += attn + experts * mlp + (c.d_model * c.n_experts if c.is_moe_layer(i) else 0)
        return total

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token, 6N + 12 * L * H * Q * T (PaLM, Chowdhery et al. 2022, appendix B; the same
        as nanoGPT's estimate_mfu): 6N for forward + backward through the N active matmul weights, and
        12 L H Q T for QK^T and AV. T counts every key as PaLM does (no causal halving), capped at
        window + n_sinks under a sliding window. Divide achieved FLOP/s by peak for MFU."""
        c = self.cfg
        keys = seq_len if c.window is None else min(seq_len, c.window + c.n_sinks)
        return 6 * self.active_matmul_params() + 12 * c.n_layers * c.n_heads * c.head_dim * keys

    # ----------------------------------------------------------------------------------------- forward
    def forward(self, input_ids: torch.Tensor, *, position_ids: torch.Tensor | None = None,
                segment_ids: torch.Tensor | None = None, cache=None, return_hidden: bool = False,
                return_logits: bool = True, token_mask: torch.Tensor | None = None) -> TransformerOutput:
        """input_ids (B, T) -> TransformerOutput.

        position_ids (B, T): by default arange(T), or restarting at each segment when segment_ids is given
        (`positions_from_segments`), or the cache's next positions.
        segment_ids (B, T): attention never crosses segments (packed sequences; each segment is one contiguous
        run, and neighbouring segments have different ids). Windows and sinks count from each segment's start.
        cache: a StaticKVCache / RollingKVCache, appended to in place (see kv_cache.py).
        return_hidden: also return the final-norm hidden states (reward / value heads read them).
        return_logits: False skips lm_head (a (B, T, V) matmul) when only hidden states are needed.
        token_mask (B, T) bool, False at padding: MoE layers do not route those tokens (moe.py); dense layers
        ignore it. Padding must come after each row's tokens (causal attention then never reads it).
        """
        B, T = input_ids.shape
        cfg = self.cfg
        if cache is not None:
            if segment_ids is not None:
                raise ValueError("segment_ids are for packed training sequences; they cannot be used with a cache")
            # the caches check positions in begin (the rolling cache refuses learned positions outright)
            cache_pos, mask = cache.begin(T)
            positions = cache_pos if position_ids is None else position_ids
        else:
            # Index of each token inside its own sequence: windows and sinks are measured per segment, so a
            # packed row behaves exactly like its segments run one by one.
            seq = (torch.arange(T, device=input_ids.device)[None] if segment_ids is None
                   else positions_from_segments(segment_ids))  # (1|B, T)
            if position_ids is None and segment_ids is None:
                check_positions(cfg, T - 1)
            positions = seq if position_ids is None else position_ids
            mask = None  # plain causal: sdpa takes is_causal=True
            if cfg.window is not None or segment_ids is not None:
                mask = attention_mask(seq, seq, window=cfg.window, n_sinks=cfg.n_sinks, q_seg=segment_ids,
                                      k_seg=segment_ids)

        x = self.embed_positions.add(self.embed_tokens(input_ids), positions)  # (B, T, D)
        if cfg.dropout > 0:
            x = F.dropout(x, cfg.dropout, self.training)
        rope = self.embed_positions.rotary(positions, x.dtype)  # (cos, sin) each (B|1, T, H|1, Dh), or None
        stats = []
        for layer in self.layers:
            x, s = layer(x, rope, mask, cache, token_mask)
            if s is not None:
                stats.append(s)
        if cache is not None:
            cache.end(T)
        hidden = self.norm(x)

        zero = x.new_zeros((), dtype=torch.float32)
        aux = cfg.aux_loss_coef * torch.stack([s.aux_loss for s in stats]).mean() if stats else zero
        z = cfg.z_loss_coef * torch.stack([s.z_loss for s in stats]).mean() if stats else zero
        return TransformerOutput(
            logits=self.lm_head(hidden) if return_logits else None,
            hidden=hidden if return_hidden else None,
            aux_loss=aux, z_loss=z,
            expert_load=tuple(s.expert_load for s in stats), dropped=tuple(s.dropped for s in stats))
