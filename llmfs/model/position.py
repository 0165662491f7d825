"""How positions enter the model: learned / sinusoidal embeddings added to the token embeddings, or rotary
embeddings applied to queries and keys inside attention, or nothing (causal attention alone leaks order).

Every kind is built from the ModelConfig and answers two questions: `add(x, positions)` (the embedding stream
with positions added) and `rotary(positions, dtype)` ((cos, signed sin) for RoPE, else None). `positions` is an int
tensor (B, T) or (1, T) of absolute positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llmfs.errors import ConfigError
from llmfs.model.config import ModelConfig


def _inverse_frequencies(base: float, dim: int, device: torch.device) -> torch.Tensor:
    """base^(-2i/dim) for i < dim/2, in float32. Computed per call (dim/2 numbers) rather than kept in a
    buffer, so `model.to(torch.bfloat16)` cannot round the frequencies."""
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim))  # as HF Llama


class LearnedPositions(nn.Module):
    """GPT-2's learned absolute position table (max_seq_len, d_model). Positions past the table are an error."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cfg.max_seq_len, cfg.d_model))

    def add(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:  # (B, T, D)
        return x + F.embedding(positions, self.weight)  # (B|1, T, D) broadcast over B

    def rotary(self, positions: torch.Tensor, dtype: torch.dtype) -> None:
        return None


class SinusoidalPositions(nn.Module):
    """Vaswani et al. 2017, sec. 3.5: PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(same). Computed
    from the positions on the fly, so it has no parameters and works at any position."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dim = cfg.d_model

    def add(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        inv_freq = _inverse_frequencies(10000.0, self.dim, positions.device)  # (D/2,)
        angles = positions[..., None].float() * inv_freq  # (B, T, D/2)
        pe = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)  # (B, T, D) interleaved sin, cos
        return x + pe.to(x.dtype)

    def rotary(self, positions: torch.Tensor, dtype: torch.dtype) -> None:
        return None


class RotaryPositions(nn.Module):
    """RoPE (Su et al. 2021, "RoFormer") in the rotate-half layout of HF Llama (`rotate_half`,
    `apply_rotary_pos_emb`): dimension i is paired with i + D/2, not with its neighbour as in the paper's
    interleaved form. The two layouts differ by a fixed permutation of the q/k projection rows; using HF's
    layout means HF Llama weights load with no permutation (checked by the HF parity test)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.theta, self.dim = cfg.rope_theta, cfg.head_dim
        # Tables laid out per head when queries and keys have the same heads (see rotary); GQA / MQA broadcast.
        self.heads = cfg.n_heads if cfg.kv_heads == cfg.n_heads else 1

    def add(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return x

    def rotary(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, signed sin), each (B|1, T, heads, D): one copy per head when q and k have the same number of
        heads, else (B|1, T, 1, D) broadcast. The copies cost T * d_model numbers once per forward and let every
        multiply in apply_rope (forward and backward, q and k, every layer) run as one contiguous stream
        broadcast over the batch only, instead of a 32-wide inner loop restarted per head: the same bits, 0-7%
        (about 3%) off a modern-stack training step at nanoGPT's shape on CPU (docs/bench/model.md, 2026-12-05)."""
        inv_freq = _inverse_frequencies(self.theta, self.dim, positions.device)  # (D/2,)
        freqs = positions[..., None].float() * inv_freq  # (B, T, D/2), float32 for large positions
        cos, sin = freqs.cos(), freqs.sin()
        # The sign of rotate_half is folded into sin: see apply_rope.
        cos, sin = torch.cat((cos, cos), dim=-1)[:, :, None], torch.cat((-sin, sin), dim=-1)[:, :, None]
        if self.heads > 1:
            cos, sin = cos.expand(-1, -1, self.heads, -1), sin.expand(-1, -1, self.heads, -1)
        return cos.to(dtype).contiguous(), sin.to(dtype).contiguous()


class NoPositions(nn.Module):
    """No position signal ("NoPE", Kazemnejad et al. 2023): the causal mask alone tells tokens apart."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()

    def add(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return x

    def rotary(self, positions: torch.Tensor, dtype: torch.dtype) -> None:
        return None


POSITIONS = {"learned": LearnedPositions, "sinusoidal": SinusoidalPositions, "rope": RotaryPositions,
             "none": NoPositions}


def apply_rope(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, T, H, D) by the angles from `RotaryPositions.rotary` ((B|1, T, H|1, D) each).

    HF writes x * cos + rotate_half(x) * sin with rotate_half(x1, x2) = (-x2, x1). Here the halves are swapped
    with one `roll`, the minus sign lives in signed_sin = (-sin, sin), and addcmul fuses the last multiply-add
    into x * cos in place (autograd needs neither that product nor the rolled copy afterwards): the same numbers
    in fewer kernels and one fewer temporary, 2-4% of a modern training step at nanoGPT's shape on CPU.
    """
    return (x * cos).addcmul_(x.roll(x.shape[-1] // 2, dims=-1), signed_sin)


def positions_from_segments(segment_ids: torch.Tensor) -> torch.Tensor:
    """Positions that restart at 0 wherever the segment id changes along T (packed SFT sequences).

    segment_ids (B, T) -> positions (B, T), e.g. [[0, 0, 0, 1, 1, 2]] -> [[0, 1, 2, 0, 1, 0]].
    """
    B, T = segment_ids.shape
    idx = torch.arange(T, device=segment_ids.device).expand(B, T)
    starts = torch.zeros_like(idx)
    starts[:, 1:] = torch.where(segment_ids[:, 1:] != segment_ids[:, :-1], idx[:, 1:], 0)
    return idx - starts.cummax(dim=1).values  # distance to the start of the current segment


def check_positions(cfg: ModelConfig, max_position: int) -> None:
    """Learned positions stop at max_seq_len; say so instead of an index error deep inside the embedding."""
    if cfg.position == "learned" and max_position >= cfg.max_seq_len:
        raise ConfigError(f"model.position = 'learned' has a table of max_seq_len = {cfg.max_seq_len} positions; "
                          f"position {max_position} is past it. Shorten the sequence, or use position = 'rope' "
                          "/ 'sinusoidal' / 'none' to run past the training length")
