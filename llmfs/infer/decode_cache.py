"""`DecodeCache`: the StaticKVCache that generation uses, with a cheaper protocol when every row holds the same
number of tokens (batch 1, a chat, or prompts of equal length) - the common case, and the one where per-step
overhead matters most.

Per decode step the general StaticKVCache builds positions and the full mask with ~8 small ops and writes each
layer's keys and values by advanced indexing (an arange and two index_put). Here, while rows are uniform:
- positions are a slice of one preallocated arange (no op);
- without a sliding window a one-query step sees every slot up to its own, so it passes no mask at all (the
  attention kernels read None with one query as "every key"; the CPU sdpa kernel would otherwise turn the boolean
  mask into an additive one each layer); under a window the mask is a slice of a preallocated boolean row kept up
  to date in place: the new slot turns visible, and the slot that just left the window (unless a sink) turns
  invisible;
- keys and values are written with one slice copy per tensor.
Rows of different lengths (a right-padded batch after `trim`) fall back to StaticKVCache's general path. The
attention is the same either way (tests/infer/test_generate.py checks generation against the uncached forward).
"""

from __future__ import annotations

import torch

from llmfs.errors import LlmfsError
from llmfs.model.attention import attention_mask
from llmfs.model.kv_cache import StaticKVCache
from llmfs.model.position import check_positions


class DecodeCache(StaticKVCache):
    def __init__(self, cfg, batch_size: int, *, max_len: int | None = None, device=None,
                 dtype: torch.dtype = torch.float32):
        super().__init__(cfg, batch_size, max_len=max_len, device=device, dtype=dtype)
        self._arange = torch.arange(self.size, device=device)[None]  # (1, S) slot == position
        self._row = torch.zeros(1, 1, 1, self.size, dtype=torch.bool, device=device)  # (1, 1, 1, S) visible keys
        self._row_at = -1  # the query position `_row` is valid for
        self.uniform = True  # every row holds `seen` tokens

    def trim(self, lengths: torch.Tensor) -> None:
        super().trim(lengths)
        self.uniform = bool((self.lengths == self.seen).all())
        self._row_at = -1

    def begin(self, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.uniform:
            return super().begin(T)
        s = self.seen
        check_positions(self.cfg, s + T - 1)
        if s + T > self.size:
            raise LlmfsError(f"KV cache full: {s} + {T} tokens > {self.size} slots; "
                             "allocate a larger cache (max_len) or use a RollingKVCache")
        positions = self._arange[:, s:s + T]  # (1, T)
        if T > 1:
            return positions, attention_mask(positions, self._arange[:, :s + T], window=self.window,
                                             n_sinks=self.n_sinks)
        return positions, self._one_query_mask(s)  # (1, 1, 1, s + 1) or None

    def _one_query_mask(self, s: int) -> torch.Tensor | None:
        if self.window is None:
            return None  # one query at the end sees slots 0..s: nothing to mask
        if self._row_at != s - 1:  # first decode step (or after a trim): build the row for query s
            self._row[0, 0, 0] = attention_mask(self._arange[:, s:s + 1], self._arange, window=self.window,
                                                n_sinks=self.n_sinks)[0, 0, 0]
        else:  # one step on: slot s joins; the slot leaving the window (not a sink) drops out
            self._row[..., s] = True
            gone = s - self.window if self.window is not None else -1
            if gone >= self.n_sinks:
                self._row[..., gone] = False
        self._row_at = s
        return self._row[..., : s + 1]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.uniform:
            return super().update(layer, k, v)
        end = self.seen + k.shape[2]
        self.k[layer][:, :, self.seen:end] = k  # (B, Hkv, T, D) into slots [seen, end)
        self.v[layer][:, :, self.seen:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]
