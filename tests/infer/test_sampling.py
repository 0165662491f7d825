"""Sampling filters on hand-made logits, and generation: cached equals uncached, seeds reproduce."""

from __future__ import annotations

import math

import pytest
import torch

from llmfs.infer.generate import generate
from llmfs.infer.sampling import SamplingConfig, frequency_penalty, min_p, repetition_penalty, sample_next, top_k, top_p

NEG = float("-inf")


def test_top_k_keeps_the_k_largest():
    x = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert top_k(x, 2).tolist() == [[NEG, 3.0, 2.0, NEG]]
    assert torch.equal(top_k(x, 0), x)


def test_top_p_hand_computed():
    # probabilities 0.5, 0.3, 0.2: with p = 0.7 the first two reach 0.8 >= 0.7, the third is dropped
    x = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.2)]])
    assert torch.isinf(top_p(x, 0.7)).tolist() == [[False, False, True]]
    assert torch.isinf(top_p(x, 0.5)).tolist() == [[False, True, True]]  # the top token alone reaches 0.5
    assert torch.isinf(top_p(x, 0.01)).tolist() == [[False, True, True]]  # the top token always stays


def test_min_p_hand_computed():
    x = torch.tensor([[math.log(0.6), math.log(0.3), math.log(0.1)]])
    # threshold 0.25 * 0.6 = 0.15: keeps 0.6 and 0.3
    assert torch.isinf(min_p(x, 0.25)).tolist() == [[False, False, True]]


def test_penalties_hand_computed():
    x = torch.tensor([[2.0, -2.0, 1.0]])
    counts = torch.tensor([[1.0, 2.0, 0.0]])
    assert repetition_penalty(x, counts, 2.0).tolist() == [[1.0, -4.0, 1.0]]
    assert frequency_penalty(x, counts, 0.5).tolist() == [[1.5, -3.0, 1.0]]


def test_greedy_and_seeded_sampling():
    logits = torch.tensor([[0.1, 2.0, 0.3], [3.0, 0.0, 0.0]])
    assert sample_next(logits, SamplingConfig(temperature=0), None).tolist() == [1, 0]
    cfg = SamplingConfig(temperature=1.0)
    a = [sample_next(logits, cfg, torch.Generator().manual_seed(3)).tolist() for _ in range(2)]
    assert a[0] == a[1]
    draws = torch.stack([sample_next(logits, cfg,
                                     torch.Generator().manual_seed(s)) for s in range(400)])
    share = (draws[:, 0] == 1).float().mean().item()
    assert abs(share - torch.softmax(logits[0], -1)[1].item()) < 0.08


@pytest.fixture
def tiny_model():
    from llmfs.model.config import ModelConfig
    from llmfs.model.transformer import Transformer

    cfg = ModelConfig(vocab_size=40, max_seq_len=32, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2)
    return Transformer(cfg, generator=torch.Generator().manual_seed(0)).eval()


def test_cached_generation_equals_uncached(tiny_model):
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10], [11]]
    greedy = SamplingConfig(temperature=0, max_new_tokens=12)
    assert generate(tiny_model, prompts, greedy) == generate(tiny_model, prompts, greedy, use_cache=False)
    sampled = SamplingConfig(temperature=1.0, top_k=10, max_new_tokens=12)
    a = generate(tiny_model, prompts, sampled, generator=torch.Generator().manual_seed(1))
    b = generate(tiny_model, prompts, sampled, generator=torch.Generator().manual_seed(1), use_cache=False)
    assert a == b and all(len(x) == 12 for x in a)


def test_generation_stops_per_row(tiny_model):
    greedy = SamplingConfig(temperature=0, max_new_tokens=10)
    free = generate(tiny_model, [[1, 2], [3]], greedy)
    stop = free[0][2]
    out = generate(tiny_model, [[1, 2], [3]], greedy, stop_ids=[stop])
    for row, want in zip(out, free):  # the first stop id is kept and ends its row; other rows run on
        assert row == (want[: want.index(stop) + 1] if stop in want else want)
    assert len(out[0]) <= 3
