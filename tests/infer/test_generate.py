"""Generation: cached equals uncached for every attention configuration, rolling past the context, streaming,
continuing a cache, per-row stops, context errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from llmfs.infer.decode_cache import DecodeCache
from llmfs.infer.generate import PromptTooLongError, complete, generate, stream
from llmfs.infer.sampling import SamplingConfig
from llmfs.model import StaticKVCache, Transformer
from tests.model.test_kv_cache import CONFIGS, make

GREEDY = SamplingConfig(temperature=0, max_new_tokens=8)
PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15]]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_cached_greedy_equals_uncached_for_every_attention_config(name):
    # MHA / GQA / MQA, sdpa and manual, sliding window with and without sinks, rope / learned / sinusoidal /
    # none positions, MoE: batched right-padded prompts of different lengths, cached vs full re-forward.
    m = make(CONFIGS[name])
    cached = generate(m, PROMPTS, GREEDY)
    assert cached == generate(m, PROMPTS, GREEDY, use_cache=False)
    assert cached == [generate(m, [p], GREEDY)[0] for p in PROMPTS]  # batched == one prompt at a time
    equal = [PROMPTS[2], PROMPTS[2][::-1]]  # rows of equal length: DecodeCache's slice path, batched
    assert generate(m, equal, GREEDY) == generate(m, equal, GREEDY, use_cache=False)


CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                         reason="needs CUDA")])


@torch.no_grad()
@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_decode_cache_logits_equal_the_full_forward_position_by_position(name, device):
    # Greedy tokens of a tiny random model can agree even when attention is wrong (it repeats one token), so the
    # logits are compared: prefill 5 tokens, then one token per step through DecodeCache's one-query path
    # (no mask without a window, the in-place row under one), batch 2 with equal lengths. On CUDA sdpa picks
    # other kernels (flash / memory-efficient / cuDNN) per shape and mask, and matmuls round differently.
    m = make(CONFIGS[name]).to(device)
    ids = torch.randint(0, m.cfg.vocab_size, (2, 14), generator=torch.Generator().manual_seed(3)).to(device)
    full = m(ids).logits  # (2, 14, V)
    cache = DecodeCache(m.cfg, 2, max_len=14, device=device)
    steps = [m(ids[:, :5], cache=cache).logits]
    steps += [m(ids[:, t:t + 1], cache=cache).logits for t in range(5, 14)]
    tol = 1e-5 if device == "cpu" else 1e-4
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=tol, rtol=tol)


def test_greedy_is_the_argmax_of_the_full_forward():
    m = make(CONFIGS["gqa"])
    seq = list(PROMPTS[1])
    for _ in range(GREEDY.max_new_tokens):
        seq.append(int(m(torch.tensor([seq])).logits[0, -1].argmax()))
    assert generate(m, [PROMPTS[1]], GREEDY)[0] == seq[len(PROMPTS[1]):]


def test_sampled_cached_equals_uncached_and_seeds_reproduce():
    m = make(CONFIGS["gqa"])
    cfg = SamplingConfig(temperature=1.0, top_k=10, top_p=0.9, repetition_penalty=1.3, frequency_penalty=0.2,
                         max_new_tokens=10)
    a = generate(m, PROMPTS, cfg, generator=torch.Generator().manual_seed(1))
    b = generate(m, PROMPTS, cfg, generator=torch.Generator().manual_seed(1), use_cache=False)
    c = generate(m, PROMPTS, cfg, generator=torch.Generator().manual_seed(2))
    assert a == b and a != c and all(len(x) == 10 for x in a)


def test_generation_stops_per_row():
    m = make(CONFIGS["gqa"])
    greedy = SamplingConfig(temperature=0, max_new_tokens=10)
    free = generate(m, [[1, 2], [3]], greedy)
    stop = free[0][2]
    out = complete(m, [[1, 2], [3]], greedy, stop_ids=[stop])
    for row, want in zip(out, free):  # the first stop id is kept and ends its row; other rows run on
        assert row.ids == (want[: want.index(stop) + 1] if stop in want else want)
        assert row.finish == ("stop" if stop in want else "length")
    assert len(out[0].ids) <= 3
    ended = complete(m, [[1, 2], [3]], greedy, stop_when=lambda row, ids: row == 1 and len(ids) == 4)
    assert [len(c.ids) for c in ended] == [10, 4] and [c.finish for c in ended] == ["length", "stop"]


def test_stream_equals_complete_and_restores_train_mode():
    m = make(CONFIGS["window_sinks"]).train()
    cfg = SamplingConfig(temperature=0.8, max_new_tokens=9)
    streamed = list(stream(m, PROMPTS[2], cfg, generator=torch.Generator().manual_seed(5)))
    assert streamed == generate(m, [PROMPTS[2]], cfg, generator=torch.Generator().manual_seed(5))[0]
    assert m.training and not torch.is_inference_mode_enabled()
    free = generate(m, [PROMPTS[2]], GREEDY)[0]
    assert list(stream(m, PROMPTS[2], GREEDY, stop_ids=[free[3]]))[-1] == free[3]


@pytest.mark.parametrize("fast", [True, False], ids=["DecodeCache", "StaticKVCache"])
def test_stream_continues_a_cache_kept_between_turns(fast):
    # A chat keeps one cache: turn 2 feeds [last id of turn 1] + new ids on top of it, and must equal a fresh
    # generation from the whole conversation so far.
    m = make(CONFIGS["gqa"])
    cache = (DecodeCache if fast else StaticKVCache)(m.cfg, 1, max_len=40)  # rope: may exceed max_seq_len
    turn1 = list(stream(m, [1, 2, 3], GREEDY, cache=cache))
    assert cache.seen == 3 + len(turn1) - 1  # the last yielded id was never fed
    turn2 = list(stream(m, [turn1[-1], 7, 8], GREEDY, cache=cache))
    assert turn2 == generate(m, [[1, 2, 3] + turn1 + [7, 8]], GREEDY)[0]
    # the cache's 40 slots end the next turn early instead of overflowing
    turn3 = list(stream(m, [turn2[-1]], SamplingConfig(temperature=0, max_new_tokens=50), cache=cache))
    assert cache.seen == 40 and len(turn3) == 40 - (3 + 8 + 3 + 7) + 1
    with pytest.raises(PromptTooLongError, match="no room"):
        list(stream(m, [1, 2], GREEDY, cache=cache))


@pytest.mark.parametrize("kw", [dict(window=4, n_sinks=2), dict(window=5, n_kv_heads=2, attn_impl="manual"),
                                dict(window=3, n_sinks=1, position="sinusoidal")])
def test_rolling_generation_past_max_seq_len_equals_the_windowed_full_forward(kw):
    # A model with its own window: the rolling cache keeps exactly the keys the windowed mask allows, so
    # cached rolling generation equals re-running the full windowed forward over the whole sequence.
    m = make(kw)
    long = SamplingConfig(temperature=0, max_new_tokens=30)  # 10 + 30 tokens, max_seq_len = 16
    prompt = list(range(1, 11)) + list(range(1, 11))  # a 20-token prompt is longer than the context too
    rolled = generate(m, [prompt, prompt], long, rolling=True)
    assert rolled == generate(m, [prompt, prompt], long, rolling=True, use_cache=False)
    assert len(rolled[0]) == 30 and rolled[0] == rolled[1]


def test_rolling_on_a_full_attention_model_uses_max_seq_len_minus_4_plus_4_sinks():
    m = make(CONFIGS["gqa"])  # trained without a window: rolling streams with window 12 + 4 sinks
    windowed = Transformer(dataclasses.replace(m.cfg, window=12, n_sinks=4)).eval()
    windowed.load_state_dict(m.state_dict())
    long = SamplingConfig(temperature=0, max_new_tokens=25)
    prompts = [[1, 2, 3, 4, 5], [6, 7, 8]]  # different lengths run one by one under a rolling cache
    rolled = generate(m, prompts, long, rolling=True)
    assert rolled == generate(windowed, prompts, long, use_cache=False, rolling=True)
    assert rolled == [generate(m, [p], long, rolling=True)[0] for p in prompts]


def test_context_errors():
    rope, learned = make(CONFIGS["gqa"]), make(CONFIGS["classic"])  # max_seq_len = 16
    with pytest.raises(PromptTooLongError, match="17 tokens .* max_seq_len = 16; shorten the prompt or use the "
                                                 "rolling option"):
        generate(rope, [[1] * 17], GREEDY)
    with pytest.raises(PromptTooLongError, match=r"prompt \(10 tokens\) \+ max_new_tokens \(8\)"):
        generate(learned, [[1] * 10], GREEDY)
    with pytest.raises(PromptTooLongError, match="learned"):
        list(stream(learned, [1, 2], GREEDY, rolling=True))
    with pytest.raises(PromptTooLongError, match="window"):
        generate(rope, [[1, 2]], GREEDY, rolling=True, use_cache=False)
    assert len(generate(learned, [[1] * 9], GREEDY)[0]) == 8  # 9 + 8 - 1 = 16 positions: fits exactly
    assert len(generate(rope, [[1] * 16], SamplingConfig(temperature=0, max_new_tokens=20))[0]) == 20


@pytest.mark.parametrize("use_cache", [True, False])
def test_moe_prefill_does_not_route_the_shorter_prompts_padding(monkeypatch, use_cache):
    """With a capacity limit, routed padding takes expert slots from the next prompts' tokens. The first logits
    of a padded batch equal those of its prompts packed into one sequence (segment ids), cached or not."""
    from llmfs.infer import generate as gen
    from llmfs.model.config import ModelConfig

    cfg = ModelConfig(vocab_size=64, max_seq_len=32, d_model=32, n_layers=2, n_heads=4, n_experts=4, top_k=2,
                      capacity_factor=1.0)
    model = Transformer(cfg, generator=torch.Generator().manual_seed(0)).eval()
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 64, (n,), generator=g).tolist() for n in (3, 11, 5)]
    seen = []
    real = gen.sample_next
    monkeypatch.setattr(gen, "sample_next", lambda logits, *a: seen.append(logits.clone()) or real(logits, *a))
    out = complete(model, prompts, SamplingConfig(temperature=0, max_new_tokens=2), use_cache=use_cache)

    def packed_last_logits(rows):  # (rows, V): each row's last logits, the rows packed into one sequence
        packed = torch.tensor([sum(rows, [])])
        segments = torch.tensor([[i for i, p in enumerate(rows) for _ in p]])
        with torch.no_grad():
            logits = model(packed, segment_ids=segments).logits[0]
        return logits[torch.tensor([len(p) for p in rows]).cumsum(0) - 1]

    torch.testing.assert_close(seen[0], packed_last_logits(prompts), atol=1e-5, rtol=1e-5)
    if not use_cache:  # the teaching path re-runs the grown, still right-padded batch: the same holds there
        grown = [p + c.ids[:1] for p, c in zip(prompts, out)]
        torch.testing.assert_close(seen[1], packed_last_logits(grown), atol=1e-5, rtol=1e-5)
