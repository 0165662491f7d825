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


def test_the_filters_compose_in_the_documented_order():
    """Penalty, then temperature, then top-k, top-p, min-p: hand-computed on 5 tokens whose surviving set
    differs if any two steps swap.
    p = (0.4, 0.3, 0.2, 0.07, 0.03); token 0 seen once, repetition penalty 3: its logit ln 0.4 < 0 is tripled,
    p ~ (0.096, 0.452, 0.301, 0.105, 0.045); temperature 0.5 squares: (0.029, 0.643, 0.286, 0.035, 0.006);
    top-k 4 drops token 4; top-p 0.9 keeps tokens 1 and 2 (0.647 + 0.288 of the four); min-p 0.1 keeps both.
    (top-p before temperature would keep 1, 2, 3, 0; the penalty after the filters would keep 0, 1, 2.)"""
    logits = torch.tensor([[0.4, 0.3, 0.2, 0.07, 0.03]]).log()
    counts = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0]])
    cfg = SamplingConfig(temperature=0.5, top_k=4, top_p=0.9, min_p=0.1, repetition_penalty=3.0)
    drawn = {int(sample_next(logits, cfg, torch.Generator().manual_seed(s), counts)) for s in range(300)}
    assert drawn == {1, 2}


def test_sampling_values_out_of_range_are_config_errors():
    import pytest

    from llmfs.config import ConfigError, from_dict

    for bad in ({"top_p": 0.0}, {"top_p": 1.5}, {"temperature": -0.1}, {"min_p": 1.5}, {"top_k": -1},
                {"repetition_penalty": 0.0}, {"max_new_tokens": 0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            from_dict(SamplingConfig, bad)
