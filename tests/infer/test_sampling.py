"""Sampling filters on hand-made logits; greedy and seeded draws (generation itself: test_generate.py)."""

from __future__ import annotations

import math

import torch

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
