"""Reward losses against values computed by hand."""

from __future__ import annotations

import math
import typing

import pytest
import torch

from llmfs.align.reward_losses import (LOSSES, bradley_terry, centering, margin_ranking, pairwise_loss,
                                      reply_lm_loss)


def test_bradley_terry_by_hand():
    chosen, rejected = torch.tensor([1.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, 1.0])
    # -log sigmoid(d) = log(1 + exp(-d)) for d = 1, 0, -2
    want = (math.log(1 + math.exp(-1)) + math.log(2) + math.log(1 + math.exp(2))) / 3
    assert float(bradley_terry(chosen, rejected)) == pytest.approx(want, rel=1e-6)


def test_bradley_terry_is_stable_for_huge_margins():
    loss = bradley_terry(torch.tensor([1e4, -1e4]), torch.tensor([-1e4, 1e4]))
    assert float(loss) == pytest.approx(2e4 / 2)  # (0 + 20000) / 2, no inf / NaN


def test_margin_ranking_by_hand_fixed_and_per_pair():
    chosen, rejected = torch.tensor([2.0, 0.5, 0.0]), torch.tensor([0.0, 0.0, 1.0])
    # differences 2, 0.5, -1; margin 1: max(0, 1 - d) = 0, 0.5, 2
    assert float(margin_ranking(chosen, rejected, 1.0)) == pytest.approx((0 + 0.5 + 2) / 3)
    # per-pair margins 3, 0, 0: 1, 0, 1
    assert float(margin_ranking(chosen, rejected, torch.tensor([3.0, 0.0, 0.0]))) == pytest.approx(2 / 3)


def test_centering_by_hand():
    chosen, rejected = torch.tensor([1.0, -2.0]), torch.tensor([2.0, 0.5])
    # sums 3, -1.5 -> squares 9, 2.25 -> mean 5.625
    assert float(centering(chosen, rejected, 0.1)) == pytest.approx(0.5625)


def test_pairwise_loss_adds_centering_and_names_match_the_recipe():
    chosen, rejected = torch.tensor([1.0, -2.0]), torch.tensor([2.0, 0.5])
    both = pairwise_loss(chosen, rejected, loss="bradley_terry", center_coef=0.1)
    assert float(both) == pytest.approx(float(bradley_terry(chosen, rejected)) + 0.5625)
    assert float(pairwise_loss(chosen, rejected, loss="margin", margin=0.0)) == pytest.approx((1 + 2.5) / 2)
    from llmfs.train.reward import RewardConfig

    assert typing.get_args(typing.get_type_hints(RewardConfig)["loss"]) == LOSSES
    with pytest.raises(ValueError, match="unknown reward loss"):
        pairwise_loss(chosen, rejected, loss="hinge")


def test_gradient_of_bradley_terry_is_sigmoid_of_minus_the_difference():
    chosen, rejected = torch.tensor([0.3], requires_grad=True), torch.tensor([-0.2], requires_grad=True)
    bradley_terry(chosen, rejected).backward()
    # d/dr_c -log sigmoid(d) = -(1 - sigmoid(d)) = -sigmoid(-d), d = 0.5
    assert float(chosen.grad) == pytest.approx(-1 / (1 + math.exp(0.5)))
    assert float(rejected.grad) == pytest.approx(1 / (1 + math.exp(0.5)))


def test_reply_lm_loss_by_hand():
    # two positions predicted, one ignored; vocab of 2 with lm_weight = identity, so the logits are the hidden
    hidden = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [5.0, 5.0]]])  # (1, 3, 2)
    targets = torch.tensor([[1, 0, -100]])
    # position 0: logits (0, 0), target 1: log 2; position 1: logits (2, 0), target 0: log(1 + e^-2)
    want = (math.log(2) + math.log(1 + math.exp(-2))) / 2
    assert float(reply_lm_loss(hidden, torch.eye(2), targets)) == pytest.approx(want, rel=1e-6)


def test_reply_lm_loss_is_the_language_models_own_loss():
    from llmfs.model.config import ModelConfig
    from llmfs.model.transformer import Transformer

    cfg = ModelConfig(vocab_size=50, max_seq_len=16, d_model=32, n_layers=1, n_heads=4, tie_embeddings=False)
    net = Transformer(cfg, generator=torch.Generator().manual_seed(0)).eval()
    ids = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(1))
    out = net(ids, return_hidden=True)
    targets = torch.full((2, 10), -100)
    targets[:, 4:9] = ids[:, 5:]  # the last five ids, predicted from the position before
    want = torch.nn.functional.cross_entropy(out.logits[:, 4:9].flatten(0, 1), ids[:, 5:].flatten())
    assert float(reply_lm_loss(out.hidden, net.lm_head.weight, targets)) == pytest.approx(float(want), rel=1e-5)
