import dataclasses

import pytest
import torch

from llmfs.config import from_dict
from llmfs.errors import ConfigError, LlmfsError
from llmfs.model import ModelConfig, RollingKVCache, StaticKVCache, Transformer

BASE = dict(vocab_size=17, max_seq_len=16, d_model=16, n_layers=2, n_heads=4)
CONFIGS = {
    "mha_rope": {}, "gqa": dict(n_kv_heads=2), "mqa_manual": dict(n_kv_heads=1, attn_impl="manual"),
    "window": dict(window=4), "window_sinks": dict(window=3, n_sinks=2, n_kv_heads=2),
    "window_sinks_manual": dict(window=3, n_sinks=2, attn_impl="manual"),
    "classic": dict(position="learned", norm="layernorm", mlp="gelu", bias=True),
    "sinusoidal": dict(position="sinusoidal"), "nope": dict(position="none", mlp="relu2"),
    "moe": dict(n_experts=3, top_k=2, shared_expert=True, d_ff=32),
}


def make(kw, seed=0):
    c = from_dict(ModelConfig, {**BASE, **kw})
    return Transformer(c, generator=torch.Generator().manual_seed(seed)).eval()


@torch.no_grad()
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_cached_decoding_equals_full_forward(name):
    m = make(CONFIGS[name])
    x = torch.randint(0, 17, (2, 13), generator=torch.Generator().manual_seed(1))
    full = m(x).logits
    cache = StaticKVCache(m.cfg, 2)
    steps = [m(x[:, :5], cache=cache).logits]  # prefill 5, then 2 at once, then one at a time
    steps.append(m(x[:, 5:7], cache=cache).logits)
    steps += [m(x[:, t:t + 1], cache=cache).logits for t in range(7, 13)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.lengths.tolist() == [13, 13] and cache.seen == 13


@torch.no_grad()
@pytest.mark.parametrize("name", ["mha_rope", "gqa", "window_sinks", "classic", "window_sinks_manual"])
def test_batched_prompts_of_different_lengths(name):
    # Right-padded prompts of lengths 3, 7, 5: prefill the padded batch, trim, then decode row-wise tokens.
    m = make(CONFIGS[name])
    g = torch.Generator().manual_seed(2)
    lengths = [3, 7, 5]
    seqs = [torch.randint(0, 17, (n + 6,), generator=g) for n in lengths]  # prompt + 6 continuation tokens
    padded = torch.zeros(3, 7, dtype=torch.long)
    for r, n in enumerate(lengths):
        padded[r, :n] = seqs[r][:n]
    cache = StaticKVCache(m.cfg, 3)
    prefill = m(padded, cache=cache).logits
    cache.trim(torch.tensor(lengths))
    decoded = [m(torch.stack([s[n + t] for s, n in zip(seqs, lengths)])[:, None], cache=cache).logits[:, 0]
               for t in range(6)]
    for r, n in enumerate(lengths):
        alone = m(seqs[r][None]).logits[0]  # (n + 6, V)
        torch.testing.assert_close(prefill[r, :n], alone[:n], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(torch.stack([d[r] for d in decoded]), alone[n:], atol=1e-5, rtol=1e-5)
    assert cache.lengths.tolist() == [9, 13, 11]


@torch.no_grad()
@pytest.mark.parametrize("kw", [dict(window=4, n_sinks=2), dict(window=5, n_sinks=0, n_kv_heads=2),
                                dict(window=3, n_sinks=1, position="sinusoidal", attn_impl="manual")])
def test_rolling_cache_equals_windowed_forward_past_max_seq_len(kw):
    m = make(kw)
    T = 40  # well past max_seq_len = 16
    x = torch.randint(0, 17, (2, T), generator=torch.Generator().manual_seed(3))
    full = m(x).logits  # the windowed full forward: no table limits rope / sinusoidal positions
    cache = RollingKVCache(m.cfg, 2)
    steps = [m(x[:, :11], cache=cache).logits]  # a prefill chunk longer than sinks + window
    steps += [m(x[:, t:t + 1], cache=cache).logits for t in range(11, 30)]
    steps.append(m(x[:, 30:T], cache=cache).logits)  # and a second chunk
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.k[0].shape[2] == kw["window"] + kw["n_sinks"] and cache.seen == T


@torch.no_grad()
def test_rolling_cache_window_on_a_full_attention_model():
    # StreamingLLM use: a model trained with full attention streams with a window chosen at inference.
    m = make({})
    windowed = Transformer(dataclasses.replace(m.cfg, window=4, n_sinks=2)).eval()
    windowed.load_state_dict(m.state_dict())
    x = torch.randint(0, 17, (1, 24), generator=torch.Generator().manual_seed(4))
    cache = RollingKVCache(m.cfg, 1, window=4, n_sinks=2)
    steps = torch.cat([m(x[:, t:t + 1], cache=cache).logits for t in range(24)], 1)
    torch.testing.assert_close(steps, windowed(x).logits, atol=1e-5, rtol=1e-5)


def test_cache_errors():
    classic = make(CONFIGS["classic"])
    with pytest.raises(ConfigError, match="learned"):
        RollingKVCache(classic.cfg, 1, window=4)
    with pytest.raises(ConfigError, match="needs a window"):
        RollingKVCache(make({}).cfg, 1)
    cache = StaticKVCache(classic.cfg, 1)
    classic(torch.zeros(1, 10, dtype=torch.long), cache=cache)
    with pytest.raises(ConfigError, match="position 16 is past it"):
        classic(torch.zeros(1, 7, dtype=torch.long), cache=cache)
    with pytest.raises(ConfigError, match="learned"):
        StaticKVCache(classic.cfg, 1, max_len=32)
    rope = make({})
    small = StaticKVCache(rope.cfg, 1, max_len=8)
    rope(torch.zeros(1, 6, dtype=torch.long), cache=small)
    with pytest.raises(LlmfsError, match="KV cache full: 6 \\+ 3 tokens > 8 slots"):
        rope(torch.zeros(1, 3, dtype=torch.long), cache=small)
    with pytest.raises(ValueError, match="trim lengths"):
        cache.trim(torch.tensor([11]))
    with pytest.raises(ValueError, match="cannot be used with a cache"):
        classic(torch.zeros(1, 1, dtype=torch.long), cache=cache, segment_ids=torch.zeros(1, 1, dtype=torch.long))
