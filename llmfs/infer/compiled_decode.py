"""An opt-in compiled decode step (`llmfs generate --compile`): one `torch.compile`d graph per batch size.

At batch 1 a small model spends much of each decode step outside its matmuls: Python, the dispatcher and a
few dozen tiny kernels (norms, RoPE, the cache write, softmax). Compiling the step fuses those kernels and runs
the whole step from one call. For that, every step must look the same to the compiler, so this cache differs
from `DecodeCache` in two ways:
- fixed shapes: attention always reads all `size` slots (= max_seq_len); the mask hides the empty ones
  (slot s holds position s, and causality k <= q hides every slot past a row's own position);
- no Python state that changes per step: each row's next position lives in a (B,) tensor, advanced in place
  (a Python int would be a new constant, hence a recompilation, at every step).
Rows may have different lengths (right-padded prompts): positions, cache writes and masks are per row.

On CUDA the step is compiled with mode="reduce-overhead" (CUDA graphs: the whole step replays as one launch);
the cache tensors are marked as static addresses so the graph can update them in place. The prefill runs
eagerly through the same cache (its length varies from call to call). The first call of a batch size pays the
compilation (~20 s on a 2-core CPU for a small model). Checked against eager generation in
tests/infer/test_compiled_decode.py; measured in docs/bench/generate.md.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from llmfs.model.attention import attention_mask


class GraphDecodeCache:
    """Static KV slots (B, Hkv, size, D) per layer; `lengths` (B,) tokens held per row, as a tensor."""

    def __init__(self, cfg, batch_size: int, *, device, dtype: torch.dtype):
        self.size = cfg.max_seq_len
        self.window, self.n_sinks = cfg.window, cfg.n_sinks
        shape = (batch_size, cfg.kv_heads, self.size, cfg.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.lengths = torch.zeros(batch_size, dtype=torch.long, device=device)
        self._slots = torch.arange(self.size, device=device)[None]  # (1, S) slot == position
        self._rows = torch.arange(batch_size, device=device)[:, None]  # (B, 1)
        self._write: torch.Tensor | None = None

    def static_tensors(self) -> list[torch.Tensor]:
        return [*self.k, *self.v, self.lengths]

    def reset(self) -> None:
        self.lengths.zero_()  # stale keys stay in the slots: masked until overwritten

    def begin(self, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        self._write = self.lengths[:, None] + torch.arange(T, device=self.lengths.device)  # (B, T) positions
        return self._write, attention_mask(self._write, self._slots, window=self.window, n_sinks=self.n_sinks)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.k[layer][self._rows, :, self._write] = k.transpose(1, 2)  # (B, T, Hkv, D) into slots (B, T)
        self.v[layer][self._rows, :, self._write] = v.transpose(1, 2)
        return self.k[layer], self.v[layer]  # every slot: the mask decides

    def end(self, T: int) -> None:
        self.lengths.add_(T)  # in place: the compiled graph keeps reading the same tensor
        self._write = None

    def trim(self, lengths: torch.Tensor) -> None:
        """Keep only the first lengths[r] tokens of each row (after a right-padded prefill)."""
        self.lengths.copy_(lengths)


class CompiledDecoder:
    """Compiled decode steps for one model, kept across calls: `session(B)` -> (reset cache, step), where
    step(ids (B, 1)) -> logits (B, V) of the next position."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self._sessions: dict[int, tuple[GraphDecodeCache, Callable]] = {}

    def session(self, batch_size: int) -> tuple[GraphDecodeCache, Callable[[torch.Tensor], torch.Tensor]]:
        if batch_size not in self._sessions:
            p = next(self.model.parameters())
            cache = GraphDecodeCache(self.model.cfg, batch_size, device=p.device, dtype=p.dtype)
            cuda = p.device.type == "cuda"
            if cuda:
                for t in cache.static_tensors():
                    torch._dynamo.mark_static_address(t)
            model = self.model

            def step(ids: torch.Tensor) -> torch.Tensor:
                return model(ids, cache=cache).logits[:, -1]  # (B, V)

            compiled = torch.compile(step, dynamic=False, mode="reduce-overhead" if cuda else None)
            self._sessions[batch_size] = (cache, compiled)
        cache, compiled = self._sessions[batch_size]
        cache.reset()
        return cache, compiled
