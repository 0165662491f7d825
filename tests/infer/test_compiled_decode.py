"""The compiled decode step (llmfs/infer/compiled_decode.py): its fixed-shape cache generates what the default
cache generates, for every attention configuration, and the compiled step does too, without recompiling."""

from __future__ import annotations

import pytest
import torch

from llmfs.infer.compiled_decode import CompiledDecoder, GraphDecodeCache
from llmfs.infer.generate import decode_steps, generate
from llmfs.infer.sampling import SamplingConfig
from llmfs.infer.decode_linear import use_decode_linears
from tests.model.test_kv_cache import CONFIGS, make

from .test_generate import GREEDY, PROMPTS


def eager_graph_cache_generate(model, prompts, cfg):
    """decode_steps over a GraphDecodeCache with its step run eagerly: the compiled path's logic, no compiler."""
    B, longest = len(prompts), max(len(p) for p in prompts)
    batch = torch.zeros(B, longest, dtype=torch.long)
    for i, p in enumerate(prompts):
        batch[i, :len(p)] = torch.tensor(p)
    lengths = torch.tensor([len(p) for p in prompts])
    cache = GraphDecodeCache(model.cfg, B, device="cpu", dtype=torch.float32)
    with torch.no_grad():
        steps = decode_steps(model, batch, lengths, cfg, generator=None, cache=cache, steps=cfg.max_new_tokens,
                             step_fn=lambda ids: model(ids, cache=cache).logits[:, -1])
        out = torch.stack(list(steps), 1).tolist()
    return out, cache


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fixed_shape_cache_generates_what_the_default_cache_generates(name):
    # right-padded prompts of different lengths: per-row positions, writes and masks over every slot
    m = make(CONFIGS[name])
    cfg = SamplingConfig(temperature=0, max_new_tokens=9)
    out, cache = eager_graph_cache_generate(m, PROMPTS, cfg)
    assert out == generate(m, PROMPTS, cfg)
    # each row holds its prompt and all but the last sampled token
    assert cache.lengths.tolist() == [len(p) + cfg.max_new_tokens - 1 for p in PROMPTS]


def test_compiled_step_matches_eager_and_compiles_once_per_batch_size():
    from torch._dynamo.utils import counters

    # GQA, a sliding window and sinks: the mask logic is all exercised; linears as `llmfs generate` has them
    m = use_decode_linears(make(CONFIGS["window_sinks"]))
    decoder = CompiledDecoder(m)
    counters.clear()
    assert generate(m, PROMPTS, GREEDY, decoder=decoder) == generate(m, PROMPTS, GREEDY)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1
    other = [[3, 1, 4, 1, 5, 9], [2, 6], [5, 3, 5, 8, 9, 7, 9, 3]]  # same batch size, new lengths: no recompile
    assert generate(m, other, GREEDY, decoder=decoder) == generate(m, other, GREEDY)
    assert counters["stats"]["unique_graphs"] == graphs
    # the streaming path (batch 1) takes its own compiled session
    from llmfs.infer.generate import stream

    assert list(stream(m, PROMPTS[1], GREEDY, decoder=decoder)) == generate(m, [PROMPTS[1]], GREEDY)[0]


def test_past_the_static_cache_is_a_clear_error_not_an_index_error():
    """A rope model decodes past max_seq_len (16 here) on the default cache; the compiled step's cache has
    max_seq_len slots: asking it for more is refused up front with what to change."""
    from llmfs.infer.generate import PromptTooLongError, stream

    m = make(CONFIGS["mha_rope"])
    prompt, cfg = [1, 2, 3], SamplingConfig(temperature=0, max_new_tokens=20)
    assert len(generate(m, [prompt], cfg)[0]) == 20  # eager: fine
    decoder = CompiledDecoder(m)
    with pytest.raises(PromptTooLongError, match=r"needs 22 cache slots, but the compiled decode step's static "
                                                 r"cache has max_seq_len = 16; lower max_new_tokens, or drop"):
        generate(m, [prompt], cfg, decoder=decoder)
    with pytest.raises(PromptTooLongError, match="static cache has max_seq_len = 16"):
        list(stream(m, prompt, cfg, decoder=decoder))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["mha_rope", "window_sinks", "classic"])
def test_cuda_graph_step_generates_what_eager_generates_on_cuda(name):
    # on CUDA the step is compiled with mode="reduce-overhead": CUDA graphs replayed over the static cache slots
    m = make(CONFIGS[name]).to("cuda")
    decoder = CompiledDecoder(m)
    assert generate(m, PROMPTS, GREEDY, decoder=decoder) == generate(m, PROMPTS, GREEDY)
    other = [[3, 1, 4, 1, 5, 9], [2, 6], [5, 3, 5, 8, 9, 7, 9, 3]]  # the same graphs replayed with new lengths
    assert generate(m, other, GREEDY, decoder=decoder) == generate(m, other, GREEDY)


def test_cache_slots_round_the_need_up_to_a_power_of_two():
    from llmfs.infer.compiled_decode import MIN_SLOTS, cache_slots

    assert MIN_SLOTS == 64
    assert [cache_slots(n, 1024) for n in (1, 64, 65, 96, 128, 129, 1000, 1024)] == \
        [64, 64, 128, 128, 128, 256, 1024, 1024]
    assert cache_slots(100, 80) == 80 and cache_slots(10, 32) == 32  # never past max_seq_len


def test_the_static_cache_is_sized_to_the_call():
    """A short generation attends over 64 slots, a longer one over 128, not max_seq_len's 256; each size
    compiles once, and the outputs are eager generation's."""
    import dataclasses

    from torch._dynamo.utils import counters

    from llmfs.model.transformer import Transformer

    cfg = dataclasses.replace(make(CONFIGS["window_sinks"]).cfg, max_seq_len=256)
    m = use_decode_linears(Transformer(cfg, generator=torch.Generator().manual_seed(0)).eval())
    decoder = CompiledDecoder(m)
    counters.clear()
    short = SamplingConfig(temperature=0, max_new_tokens=6)
    assert generate(m, PROMPTS, short, decoder=decoder) == generate(m, PROMPTS, short)
    graphs = counters["stats"]["unique_graphs"]
    long_prompt = [list(range(1, 17)) * 5]  # 80 tokens + 6 new: 85 slots -> 128
    assert generate(m, long_prompt, short, decoder=decoder) == generate(m, long_prompt, short)
    assert sorted(decoder._sessions) == [(1, 128), (len(PROMPTS), 64)]
    assert all(c.size == key[1] and c.k[0].shape[2] == key[1] for key, (c, _) in decoder._sessions.items())
    more = counters["stats"]["unique_graphs"]
    assert more > graphs
    assert generate(m, PROMPTS, short, decoder=decoder) == generate(m, PROMPTS, short)  # a known size again
    assert counters["stats"]["unique_graphs"] == more


def test_sessions_past_dynamos_recompile_limit_still_compile():
    """Every session compiles the same `step` code; dynamo allows 8 compilations per code object and then runs
    new ones eagerly, silently. The first call of each session lifts the limit."""
    from torch._dynamo.utils import counters

    from llmfs.infer.compiled_decode import _first_call_unlimited

    def session(scale: float, wrap: bool):
        def step(x: torch.Tensor) -> torch.Tensor:
            return x * scale + 1

        compiled = torch.compile(step, backend="eager", dynamic=False)
        return _first_call_unlimited(compiled) if wrap else compiled

    for wrap, want in ((False, 8), (True, 12)):
        torch._dynamo.reset()
        counters.clear()
        for i in range(12):
            assert session(float(i), wrap)(torch.ones(2)).tolist() == [i + 1.0] * 2
        assert counters["stats"]["unique_graphs"] == want
