"""Token-level generation: prefill the prompt(s), then decode one token per step over a KV cache.

Three entry points, one decode loop (`decode_steps`):
- `stream(model, prompt_ids, cfg, ...)` yields the new ids of ONE sequence as they are sampled (batch 1): what a
  chat REPL calls. Pass your own `cache=` to continue a conversation: the prompt ids are then appended to what the
  cache already holds. When the stream ends, the cache holds everything but the last yielded id (that id was
  sampled, never fed), so the next turn's ids start with it (a chat template's end-of-turn token).
- `complete(model, prompts, cfg, ...)` -> one `Completion` (ids, finish reason, seconds) per prompt, batched.
- `generate(...)`: the ids only (the original API).

Batching: prompts of different lengths are right-padded into one batch; after the prefill, `cache.trim(lengths)`
frees each row's pad slots so its next token is written right after its own prompt (see `StaticKVCache`).
Each row finishes at a stop id (kept as its last id), when `stop_when(row, ids)` says so (the text layer's stop
strings), or after `max_new_tokens`; finished rows keep decoding (cheap, keeps the batch rectangular) but
nothing more is recorded for them.

Context: without `rolling`, a prompt longer than `max_seq_len` is a `PromptTooLongError`, and so is prompt +
max_new_tokens past `max_seq_len` for learned positions (they have no embedding there). rope / sinusoidal / none
models may decode past `max_seq_len` (the static cache is sized for prompt + new tokens); their positions are
defined there but untrained. `rolling=True` decodes over a `RollingKVCache` (StreamingLLM: the first n_sinks
tokens + the last `window`), bounded memory and any length; a model trained without a window gets window =
max_seq_len - n_sinks with n_sinks = `ROLLING_SINKS`. Rolling rows must have equal lengths, so prompts of
different lengths run one by one.
`use_cache=False` re-runs the full forward for every token: the teaching path, and the oracle the cached path
is tested against (with `rolling`, the model must have its own window: the uncached forward applies it).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence

import torch

from llmfs.errors import LlmfsError
from llmfs.infer.compiled_decode import CompiledDecoder
from llmfs.infer.decode_cache import DecodeCache
from llmfs.infer.sampling import SamplingConfig, sample_next
from llmfs.model.kv_cache import RollingKVCache, StaticKVCache

ROLLING_SINKS = 4  # StreamingLLM's default number of attention-sink tokens for a model trained without a window


class PromptTooLongError(LlmfsError):
    """A prompt (or prompt + new tokens) that does not fit the model's context."""


@dataclasses.dataclass(frozen=True)
class Completion:
    ids: list[int]  # the new tokens (a stop id that ended the row included)
    finish: str  # "stop" (stop id or stop_when) or "length" (max_new_tokens or a full cache)
    seconds: float  # from the start of the call until this row finished


def rolling_cache(model_cfg, batch_size: int, *, device, dtype) -> RollingKVCache:
    """The cache `rolling=True` uses: the model's own window and sinks, else max_seq_len - ROLLING_SINKS + sinks."""
    if model_cfg.window is not None:
        return RollingKVCache(model_cfg, batch_size, device=device, dtype=dtype)
    sinks = min(ROLLING_SINKS, model_cfg.max_seq_len - 1)
    return RollingKVCache(model_cfg, batch_size, window=model_cfg.max_seq_len - sinks, n_sinks=sinks,
                          device=device, dtype=dtype)


def check_fits(model_cfg, prompt_len: int, max_new_tokens: int, *, rolling: bool, use_cache: bool = True,
               compiled: bool = False) -> None:
    """Raise a one-line PromptTooLongError when a prompt cannot be generated from as asked. `compiled`: decoding
    on the compiled step's static cache, which has max_seq_len slots whatever the position kind."""
    L = model_cfg.max_seq_len
    learned = model_cfg.position == "learned"
    if rolling and learned:
        raise PromptTooLongError("rolling generation runs past max_seq_len, but model.position = 'learned' has no "
                                 "embedding there; drop the rolling option (--rolling)")
    if rolling and not use_cache and model_cfg.window is None:
        raise PromptTooLongError("rolling without the cache needs a model trained with a window (the uncached "
                                 "forward applies model.window); drop --no-cache or --rolling")
    if rolling:
        return
    if prompt_len > L:
        fix = "shorten the prompt" if learned else "shorten the prompt or use the rolling option (--rolling)"
        raise PromptTooLongError(f"the prompt has {prompt_len} tokens but the model's context is max_seq_len = "
                                 f"{L}; {fix}")
    if learned and prompt_len + max_new_tokens - 1 > L:
        raise PromptTooLongError(f"prompt ({prompt_len} tokens) + max_new_tokens ({max_new_tokens}) needs "
                                 f"positions up to {prompt_len + max_new_tokens - 2}, but learned positions end at "
                                 f"max_seq_len = {L}; shorten the prompt or lower max_new_tokens")
    if compiled and prompt_len + max_new_tokens - 1 > L:
        raise PromptTooLongError(f"prompt ({prompt_len} tokens) + max_new_tokens ({max_new_tokens}) needs "
                                 f"{prompt_len + max_new_tokens - 1} cache slots, but the compiled decode step's "
                                 f"static cache has max_seq_len = {L}; lower max_new_tokens, or drop --compile")


def _needs_counts(cfg: SamplingConfig) -> bool:
    return cfg.repetition_penalty != 1.0 or cfg.frequency_penalty != 0.0


def _real(lengths: torch.Tensor, width: int) -> torch.Tensor | None:
    """(B, width) bool, False at each row's right padding; None when no row is padded."""
    if bool((lengths == width).all()):
        return None
    return torch.arange(width, device=lengths.device)[None] < lengths[:, None]


@torch.inference_mode()  # entered only while the generator runs: the consumer between yields is not affected
def decode_steps(model: torch.nn.Module, batch: torch.Tensor, lengths: torch.Tensor, cfg: SamplingConfig, *,
                 generator: torch.Generator | None, cache, steps: int, pad_id: int = 0,
                 step_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Iterator[torch.Tensor]:
    """The decode loop: yields the next ids (B,) `steps` times, lazily (a consumer that stops early saves the
    remaining forwards). batch (B, T) right-padded prompts, lengths (B,) their lengths; `cache` None = uncached.
    `step_fn(ids (B, 1)) -> logits (B, V)` replaces the cached forward (the compiled step of compiled_decode.py).
    Put the model in eval mode first."""
    B = batch.shape[0]
    rows = torch.arange(B, device=batch.device)
    counts = torch.zeros(B, model.cfg.vocab_size, device=batch.device) if _needs_counts(cfg) else None
    # The prefill's lm_head runs on each row's last position only: (B, D) @ (D, V), not (B, T, D) @ (D, V).
    # token_mask: MoE layers do not route the shorter prompts' padding (no capacity slot taken from real tokens)
    hidden = model(batch, cache=cache, return_logits=False, return_hidden=True,
                   token_mask=_real(lengths, batch.shape[1])).hidden  # (B, T, D)
    logits = model.lm_head(hidden[rows, lengths - 1])  # (B, V)
    if cache is not None and hasattr(cache, "trim"):  # static caches: drop the prompts' right padding
        cache.trim(cache.lengths - batch.shape[1] + lengths)
    for step in range(steps):
        nxt = sample_next(logits, cfg, generator, counts)  # (B,)
        if counts is not None:
            counts[rows, nxt] += 1
        yield nxt
        if step == steps - 1:
            return
        if step_fn is not None:
            logits = step_fn(nxt[:, None])  # (B, V)
        elif cache is not None:
            logits = model(nxt[:, None], cache=cache).logits[:, -1]  # (B, V)
        else:  # teaching path: append each row's token after its own last one and re-run everything
            lengths = lengths + 1
            grown = torch.full((B, int(lengths.max())), pad_id, dtype=torch.long, device=batch.device)
            grown[:, : batch.shape[1]] = batch
            grown[rows, lengths - 1] = nxt
            batch = grown
            logits = model(batch, token_mask=_real(lengths, batch.shape[1])).logits[rows, lengths - 1]


def _new_cache(model, B: int, longest: int, cfg: SamplingConfig, rolling: bool):
    p = next(model.parameters())
    if rolling:
        return rolling_cache(model.cfg, B, device=p.device, dtype=p.dtype)
    return DecodeCache(model.cfg, B, max_len=longest + cfg.max_new_tokens - 1, device=p.device, dtype=p.dtype)


def stream(model: torch.nn.Module, prompt_ids: Sequence[int], cfg: SamplingConfig, *,
           generator: torch.Generator | None = None, stop_ids: Sequence[int] = (), cache=None,
           use_cache: bool = True, rolling: bool = False, decoder: CompiledDecoder | None = None) -> Iterator[int]:
    """Yield the new ids of one sequence as they are sampled; a stop id is yielded, then the stream ends.
    `cache`: continue from a cache you keep between calls, e.g. `DecodeCache(model.cfg, 1, max_len=...)` (a
    static cache has room for `cache.size` tokens: the stream ends early, as "length", when it is full).
    `decoder`: decode with its compiled step (a fresh stream on the static cache only)."""
    if len(prompt_ids) == 0:
        raise ValueError("the prompt needs at least one token")
    stop = set(stop_ids)
    device = next(model.parameters()).device
    steps = cfg.max_new_tokens
    step_fn = None
    if cache is None:
        check_fits(model.cfg, len(prompt_ids), steps, rolling=rolling, use_cache=use_cache,
                   compiled=decoder is not None and use_cache and not rolling)
        if decoder is not None and use_cache and not rolling:
            cache, step_fn = decoder.session(1, len(prompt_ids) + steps - 1)
        else:
            cache = _new_cache(model, 1, len(prompt_ids), cfg, rolling) if use_cache else None
    elif isinstance(cache, StaticKVCache):
        room = cache.size - cache.seen - len(prompt_ids)
        if room < 0:
            raise PromptTooLongError(f"the KV cache holds {cache.seen} of {cache.size} tokens, no room for "
                                     f"{len(prompt_ids)} more; start a new cache (a new conversation)")
        steps = min(steps, room + 1)
    batch = torch.tensor([list(prompt_ids)], dtype=torch.long, device=device)  # (1, T)
    lengths = torch.tensor([len(prompt_ids)], device=device)
    was_training = model.training
    model.eval()
    try:
        for nxt in decode_steps(model, batch, lengths, cfg, generator=generator, cache=cache, steps=steps,
                                step_fn=step_fn):
            i = int(nxt[0])
            yield i
            if i in stop:
                return
    finally:
        model.train(was_training)


def complete(model: torch.nn.Module, prompts: Sequence[Sequence[int]], cfg: SamplingConfig, *,
             generator: torch.Generator | None = None, stop_ids: Sequence[int] = (), use_cache: bool = True,
             rolling: bool = False, pad_id: int = 0,
             stop_when: Callable[[int, list[int]], bool] | None = None,
             decoder: CompiledDecoder | None = None) -> list[Completion]:
    """Generate from every prompt in one batch. `stop_when(row, ids)` is asked after each new id of a row
    (ids so far, that id included) and ends the row ("stop") when it returns True. `decoder`: decode with its
    compiled step (`compiled_decode.py`; the static cache only, not with rolling or use_cache=False)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    if rolling and len({len(p) for p in prompts}) > 1:  # a rolling cache advances all rows together
        t0 = time.perf_counter()
        out = []
        for i, p in enumerate(prompts):
            when = None if stop_when is None else (lambda _, ids, i=i: stop_when(i, ids))
            c = complete(model, [p], cfg, generator=generator, stop_ids=stop_ids, use_cache=use_cache,
                         rolling=True, pad_id=pad_id, stop_when=when)[0]
            out.append(dataclasses.replace(c, seconds=time.perf_counter() - t0))
        return out
    longest = max(len(p) for p in prompts)
    check_fits(model.cfg, longest, cfg.max_new_tokens, rolling=rolling, use_cache=use_cache,
               compiled=decoder is not None and use_cache and not rolling)
    device = next(model.parameters()).device
    B = len(prompts)
    batch = torch.full((B, longest), pad_id, dtype=torch.long, device=device)  # (B, T) right-padded
    for i, p in enumerate(prompts):
        batch[i, : len(p)] = torch.tensor(p, dtype=torch.long, device=device)
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    stop = set(stop_ids)
    ids: list[list[int]] = [[] for _ in prompts]
    finish: list[str | None] = [None] * B
    seconds = [0.0] * B
    live = list(range(B))
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    try:
        step_fn = None
        if decoder is not None and use_cache and not rolling:
            cache, step_fn = decoder.session(B, longest + cfg.max_new_tokens - 1)
        else:
            cache = _new_cache(model, B, longest, cfg, rolling) if use_cache else None
        for nxt in decode_steps(model, batch, lengths, cfg, generator=generator, cache=cache,
                                steps=cfg.max_new_tokens, pad_id=pad_id, step_fn=step_fn):
            values = nxt.tolist()  # the one host transfer per step: B ints
            for i in list(live):
                ids[i].append(values[i])
                if values[i] in stop or (stop_when is not None and stop_when(i, ids[i])):
                    finish[i], seconds[i] = "stop", time.perf_counter() - t0
                    live.remove(i)
            if not live:
                break
    finally:
        model.train(was_training)
    end = time.perf_counter() - t0
    return [Completion(ids[i], finish[i] or "length", seconds[i] if finish[i] else end) for i in range(B)]


def generate(model: torch.nn.Module, prompts: Sequence[Sequence[int]], cfg: SamplingConfig, *,
             generator: torch.Generator | None = None, stop_ids: Sequence[int] = (), use_cache: bool = True,
             rolling: bool = False, pad_id: int = 0, decoder: CompiledDecoder | None = None) -> list[list[int]]:
    """The new tokens of each prompt (stop id included when one ends the row)."""
    return [c.ids for c in complete(model, prompts, cfg, generator=generator, stop_ids=stop_ids,
                                    use_cache=use_cache, rolling=rolling, pad_id=pad_id, decoder=decoder)]
