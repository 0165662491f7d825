"""An opt-in compiled decode step (`llmfs generate --compile`): one `torch.compile`d graph per batch size and
static cache size.

At batch 1 a small model spends much of each decode step outside its matmuls: Python, the dispatcher and a
few dozen tiny kernels (norms, RoPE, the cache write, softmax). Compiling the step fuses those kernels and runs
the whole step from one call. For that, every step must look the same to the compiler, so this cache differs
from `DecodeCache` in two ways:
- fixed shapes: attention always reads all `size` slots; the mask hides the empty ones (slot s holds position
  s, and causality k <= q hides every slot past a row's own position). `size` is the call's need (longest
  prompt + new tokens - 1) rounded up to a power of two, at least `MIN_SLOTS` and at most max_seq_len: one
  compiled step per (batch size, size), at most log2(max_seq_len / MIN_SLOTS) + 1 sizes. Why not always
  max_seq_len: every step reads every slot, and at GPT-2 size 1,024 slots were 76% of a compiled step's time
  on an H200 (docs/bench/gpu.md) and 75 MB of keys and values per step on a CPU, for a 96-token generation;
- no Python state that changes per step: each row's next position lives in a (B,) tensor, advanced in place
  (a Python int would be a new constant, hence a recompilation, at every step).
Rows may have different lengths (right-padded prompts): positions, cache writes and masks are per row.

On CUDA the step is compiled with mode="reduce-overhead" (CUDA graphs: the whole step replays as one launch);
the cache tensors are marked as static addresses so the graph can update them in place. The prefill runs
eagerly through the same cache (its length varies from call to call). The first call of a batch size and cache
size pays the compilation (~10-20 s on a 2-core CPU for a small model). Checked against eager generation in
tests/infer/test_compiled_decode.py; measured in docs/bench/generate.md.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from llmfs.model.attention import attention_mask


MIN_SLOTS = 64  # the smallest static cache: fewer sizes (compilations) for short generations


def cache_slots(needed: int, max_seq_len: int) -> int:
    """Slots of the static cache for a call that needs `needed`: the next power of two, MIN_SLOTS at least,
    max_seq_len at most (more is never needed: check_fits refuses a call that needs more)."""
    return min(max_seq_len, max(MIN_SLOTS, 1 << max(0, needed - 1).bit_length()))


class GraphDecodeCache:
    """Static KV slots (B, Hkv, size, D) per layer; `lengths` (B,) tokens held per row, as a tensor."""

    def __init__(self, cfg, batch_size: int, *, device, dtype: torch.dtype, size: int | None = None):
        self.size = size or cfg.max_seq_len
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
    """Compiled decode steps for one model, kept across calls: `session(B, slots)` -> (reset cache, step), where
    step(ids (B, 1)) -> logits (B, V) of the next position and the cache has `cache_slots(slots)` slots."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self._sessions: dict[tuple[int, int], tuple[GraphDecodeCache, Callable]] = {}

    def session(self, batch_size: int, slots: int | None = None
                ) -> tuple[GraphDecodeCache, Callable[[torch.Tensor], torch.Tensor]]:
        """`slots`: cache slots the call needs (longest prompt + max_new_tokens - 1); None: max_seq_len."""
        L = self.model.cfg.max_seq_len
        key = (batch_size, cache_slots(slots, L) if slots is not None else L)
        if key not in self._sessions:
            p = next(self.model.parameters())
            cache = GraphDecodeCache(self.model.cfg, batch_size, device=p.device, dtype=p.dtype, size=key[1])
            cuda = p.device.type == "cuda"
            if cuda:
                for t in cache.static_tensors():
                    torch._dynamo.mark_static_address(t)
            model = self.model

            def step(ids: torch.Tensor) -> torch.Tensor:
                return model(ids, cache=cache).logits[:, -1]  # (B, V)

            compiled = torch.compile(step, dynamic=False, mode="reduce-overhead" if cuda else None)
            self._sessions[key] = (cache, _first_call_unlimited(compiled))
        cache, compiled = self._sessions[key]
        cache.reset()
        return cache, compiled


_LIMIT = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"  # < 2.7


def _first_call_unlimited(compiled: Callable) -> Callable:
    """`compiled`, with its first call (the compilation) allowed past dynamo's recompile limit (8 per code object:
    every session compiles the same `step` code, one per batch size and cache size, and past the limit dynamo
    would silently run new sessions eagerly). Later calls run as they are."""
    compiled_once = False

    def call(ids: torch.Tensor) -> torch.Tensor:
        nonlocal compiled_once
        if compiled_once:
            return compiled(ids)
        with torch._dynamo.config.patch(**{_LIMIT: 256}):
            out = compiled(ids)
        compiled_once = True
        return out
    return call
