"""Key/value caches for incremental decoding.

Both caches speak the same three-step protocol with `Transformer.forward(..., cache=cache)`:
`begin(T) -> (positions (B, T), mask (B|1, 1, T, Tk))` once per forward, `update(layer, k, v) -> (k, v)` once
per layer (store the new keys, return every key the queries may look at), `end(T)` once all layers ran.
The cache, not the model, owns the mask of cached decoding, since only it knows which slot holds what.

StaticKVCache: preallocated (B, Hkv, max_len, D) per layer, for batched generation.
  Rows are RIGHT-padded: row r's real tokens occupy slots [0, lengths[r]) and its position ids are its slot
  indices, so a prompt keeps the positions it had in training. To prefill prompts of different lengths, run
  the padded batch once, then `trim(prompt_lengths)`: the pad slots become free, and each row's next token is
  written at its own length (advanced indexing, one write for the whole batch). Pad tokens written during the
  prefill sit after every real token of their row, so causality keeps them invisible.
RollingKVCache: n_sinks + window slots per layer, so generation runs past max_seq_len with bounded memory
  (StreamingLLM, Xiao et al. 2023). Positions keep increasing (absolute RoPE angles); learned positions end at
  max_seq_len, so this cache refuses them. All rows advance together (same length).
Create a cache with the model's dtype and device; a forward with a cache appends to it in place.
"""

from __future__ import annotations

import torch

from llmfs.errors import ConfigError, LlmfsError
from llmfs.model.attention import attention_mask
from llmfs.model.config import ModelConfig
from llmfs.model.position import check_positions


class StaticKVCache:
    """Preallocated cache with per-row lengths (right padding). `seen` = max(lengths) as a Python int."""

    def __init__(self, cfg: ModelConfig, batch_size: int, *, max_len: int | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        self.size = cfg.max_seq_len if max_len is None else max_len
        if cfg.position == "learned" and self.size > cfg.max_seq_len:
            raise ConfigError(f"a static cache of {self.size} slots needs positions past max_seq_len = "
                              f"{cfg.max_seq_len}, which model.position = 'learned' does not have")
        self.window, self.n_sinks = cfg.window, cfg.n_sinks
        self.cfg = cfg
        shape = (batch_size, cfg.kv_heads, self.size, cfg.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.lengths = torch.zeros(batch_size, dtype=torch.long, device=device)  # (B,) tokens held per row
        self.seen = 0
        self._write: torch.Tensor | None = None  # (B, T) slots the current forward writes

    def begin(self, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        check_positions(self.cfg, self.seen + T - 1)  # learned positions: say so rather than "cache full"
        if self.seen + T > self.size:
            raise LlmfsError(f"KV cache full: {self.seen} + {T} tokens > {self.size} slots; "
                             "allocate a larger cache (max_len) or use a RollingKVCache")
        arange = torch.arange(T, device=self.lengths.device)
        self._write = self.lengths[:, None] + arange  # (B, T) slot == position
        k_pos = torch.arange(self.seen + T, device=self.lengths.device)[None]  # (1, Tk)
        # A row's slots below its query hold that row's real tokens (rows fill contiguously from 0); slots
        # above the query (stale pads, other rows' longer history) fail k <= q. So causal + window is enough.
        mask = attention_mask(self._write, k_pos, window=self.window, n_sinks=self.n_sinks)
        return self._write, mask

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.arange(k.shape[0], device=k.device)[:, None]  # (B, 1)
        end = self.seen + k.shape[2]
        self.k[layer][rows, :, self._write] = k.transpose(1, 2)  # (B, T, Hkv, D) into slots (B, T)
        self.v[layer][rows, :, self._write] = v.transpose(1, 2)
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def end(self, T: int) -> None:
        self.lengths += T
        self.seen += T
        self._write = None

    def trim(self, lengths: torch.Tensor) -> None:
        """Keep only the first lengths[r] tokens of each row (after a right-padded prefill)."""
        lengths = lengths.to(self.lengths.device, torch.long)
        if bool((lengths > self.lengths).any()) or bool((lengths < 0).any()):
            raise ValueError(f"trim lengths {lengths.tolist()} must be within 0..{self.lengths.tolist()}")
        self.lengths = lengths.clone()
        self.seen = int(lengths.max()) if lengths.numel() else 0


class RollingKVCache:
    """Sinks + sliding-window ring buffer. Slot s < n_sinks holds position s; the other `window` slots hold the
    latest positions p at n_sinks + (p - n_sinks) % window."""

    def __init__(self, cfg: ModelConfig, batch_size: int, *, window: int | None = None, n_sinks: int | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        if cfg.position == "learned":
            raise ConfigError("RollingKVCache runs past max_seq_len, but model.position = 'learned' has no "
                              "embedding there; use a StaticKVCache (up to max_seq_len) or a rope / sinusoidal "
                              "/ none model")
        self.window = cfg.window if window is None else window
        self.n_sinks = cfg.n_sinks if n_sinks is None else n_sinks
        if self.window is None:
            raise ConfigError("RollingKVCache needs a window: set model.window or pass window=")
        slots = self.n_sinks + self.window
        shape = (batch_size, cfg.kv_heads, slots, cfg.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.slot_pos = torch.full((slots,), -1, dtype=torch.long, device=device)  # (S,) -1 = empty
        self.batch_size, self.seen = batch_size, 0
        self._keep: torch.Tensor | None = None  # indices into the new chunk to store
        self._slots: torch.Tensor | None = None  # where they go

    @property
    def lengths(self) -> torch.Tensor:
        return torch.full((self.batch_size,), self.seen, dtype=torch.long, device=self.slot_pos.device)

    def begin(self, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.slot_pos.device
        q_pos = (self.seen + torch.arange(T, device=device))[None]  # (1, T)
        k_pos = torch.cat((self.slot_pos, q_pos[0]))[None]  # (1, S + T): buffer, then the chunk itself
        mask = attention_mask(q_pos, k_pos, window=self.window, n_sinks=self.n_sinks, k_valid=k_pos >= 0)
        # Which new tokens survive: sinks, and the last `window` of the others (earlier ones would be
        # overwritten within this same chunk).
        p = q_pos[0]
        is_sink = p < self.n_sinks
        rank_from_end = (~is_sink).flip(0).cumsum(0).flip(0)  # 1 for the newest non-sink token
        keep = is_sink | ((~is_sink) & (rank_from_end <= self.window))
        self._keep = keep.nonzero().squeeze(1)
        kept = p[self._keep]
        self._slots = torch.where(kept < self.n_sinks, kept, self.n_sinks + (kept - self.n_sinks) % self.window)
        return q_pos.expand(self.batch_size, T), mask

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k_all = torch.cat((self.k[layer], k), dim=2)  # (B, Hkv, S + T, D), read before overwriting
        v_all = torch.cat((self.v[layer], v), dim=2)
        self.k[layer][:, :, self._slots] = k[:, :, self._keep]
        self.v[layer][:, :, self._slots] = v[:, :, self._keep]
        return k_all, v_all

    def end(self, T: int) -> None:
        self.slot_pos[self._slots] = self.seen + self._keep
        self.seen += T
        self._keep = self._slots = None
