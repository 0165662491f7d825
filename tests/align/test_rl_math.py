"""The RL pieces against hand-computed values: masked whitening, GAE, group advantages, KL estimators, the
clipped policy and value losses, and the three aggregations."""

from __future__ import annotations

import math

import pytest
import torch

from llmfs.align.advantages import gae, group_advantages, zero_variance_groups
from llmfs.align.kl import AdaptiveKL, kl_k1, kl_k3
from llmfs.align.masked import masked_mean, masked_var, masked_whiten
from llmfs.align.policy_loss import (AGGREGATIONS, clipped_policy_loss, clipped_value_loss, entropy)

T = torch.tensor


def test_masked_whiten_ignores_padding():
    x = T([[1.0, 2.0, 3.0, 100.0], [-50.0, 4.0, 5.0, 6.0]])
    m = T([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]])
    vals = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert float(masked_mean(x, m)) == pytest.approx(3.5)
    assert float(masked_var(x, m)) == pytest.approx(float(vals.var()))
    w = masked_whiten(x, m)
    expected = (vals - 3.5) / math.sqrt(float(vals.var()))
    assert w[m.bool()].tolist() == pytest.approx(expected.tolist(), rel=1e-5)
    assert w[0, 3] == 0 and w[1, 0] == 0
    kept = masked_whiten(x, m, shift_mean=False)
    assert kept[m.bool()].tolist() == pytest.approx((expected + 3.5).tolist(), rel=1e-5)


def test_gae_by_hand():
    # one row: prompt position (masked), 3 response tokens, 1 pad; gamma 0.9, lambda 0.8
    r = T([[0.0, 0.0, 0.0, 1.0, 7.0]])
    v = T([[5.0, 0.5, 0.4, 0.3, 9.0]])
    m = T([[0.0, 1.0, 1.0, 1.0, 0.0]])
    adv, ret = gae(r, v, m, gamma=0.9, lam=0.8)
    d3 = 1.0 + 0.9 * 0.0 - 0.3  # last response token: the value after it is 0
    d2 = 0.0 + 0.9 * 0.3 - 0.4
    d1 = 0.0 + 0.9 * 0.4 - 0.5
    a3 = d3
    a2 = d2 + 0.72 * a3
    a1 = d1 + 0.72 * a2
    assert adv[0].tolist() == pytest.approx([0.0, a1, a2, a3, 0.0])
    assert ret[0].tolist() == pytest.approx([0.0, a1 + 0.5, a2 + 0.4, a3 + 0.3, 0.0])
    # lambda = 1, gamma = 1: advantages are returns-to-go minus the value
    adv1, _ = gae(r, v, m, gamma=1.0, lam=1.0)
    assert adv1[0, 1:4].tolist() == pytest.approx([1 - 0.5, 1 - 0.4, 1 - 0.3])


def test_group_advantages_by_hand():
    r = T([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])  # two groups of three
    std = math.sqrt(1 / 3)  # unbiased std of (1, 0, 0)
    g = group_advantages(r, 3, scale="group", eps=0.0)
    assert g[:3].tolist() == pytest.approx([(2 / 3) / std, (-1 / 3) / std, (-1 / 3) / std])
    assert g[3:].tolist() == [0.0, 0.0, 0.0]  # a zero-variance group: no signal (0 / eps)
    assert group_advantages(r, 3, scale="none").tolist() == pytest.approx([2 / 3, -1 / 3, -1 / 3, 0, 0, 0])
    b = group_advantages(r, 3, scale="batch", eps=0.0)
    assert b[0] == pytest.approx((2 / 3) / float(r.std()))
    assert zero_variance_groups(r, 3) == 0.5
    with pytest.raises(ValueError):
        group_advantages(r, 4)
    # groups of one: no baseline (REINFORCE), the reward itself or over the batch's std; "group" has no std
    assert group_advantages(r, 1, scale="none").tolist() == r.tolist()
    assert group_advantages(r, 1, scale="batch", eps=0.0).tolist() == pytest.approx(
        ((r - r.mean()) / r.std()).tolist())
    with pytest.raises(ValueError, match="needs group_size >= 2"):
        group_advantages(r, 1, scale="group")


def test_kl_estimators_by_hand():
    logp, ref = T([-1.0, -2.0]), T([-1.5, -1.0])
    assert kl_k1(logp, ref).tolist() == pytest.approx([0.5, -1.0])
    k3 = kl_k3(logp, ref)
    assert k3.tolist() == pytest.approx([math.exp(-0.5) - 1 + 0.5, math.exp(1.0) - 1 - 1.0])
    assert (k3 >= 0).all()
    # both are unbiased for KL(p || q) when tokens are sampled from p
    p, q = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.4, 0.4, 0.2])
    exact = float((p * (p / q).log()).sum())
    lp, lq = p.log(), q.log()
    assert float((p * kl_k1(lp, lq)).sum()) == pytest.approx(exact)
    assert float((p * kl_k3(lp, lq)).sum()) == pytest.approx(exact)


def test_adaptive_kl_moves_toward_target():
    c = AdaptiveKL(beta=0.1, target=1.0, horizon=100)
    assert c.update(kl=3.0, n_samples=10) == pytest.approx(0.1 * (1 + 0.2 * 0.1))  # error clipped at +0.2
    assert c.update(kl=0.5, n_samples=10) == pytest.approx(0.1 * 1.02 * (1 - 0.2 * 0.1))  # clipped at -0.2
    fixed = AdaptiveKL(beta=0.1, target=None)
    assert fixed.update(5.0, 100) == 0.1


def test_clipped_policy_loss_by_hand():
    old = T([[0.0, 0.0, 0.0, 0.0]])
    logp = T([[math.log(1.5), math.log(0.5), math.log(1.1), 0.0]])
    adv = T([[1.0, -1.0, 1.0, 5.0]])
    m = T([[1.0, 1.0, 1.0, 0.0]])
    out = clipped_policy_loss(logp, old, adv, m, clip_low=0.2)
    # ratio 1.5, A>0 -> clipped at 1.2; ratio 0.5, A<0 -> clipped at 0.8 (loss 0.8); ratio 1.1 -> not clipped
    assert out.per_token[0, :3].tolist() == pytest.approx([-1.2, 0.8, -1.1])
    assert float(out.clip_fraction) == pytest.approx(2 / 3)
    ratios = [1.5, 0.5, 1.1]
    assert float(out.approx_kl) == pytest.approx(sum(r - 1 - math.log(r) for r in ratios) / 3)
    higher = clipped_policy_loss(logp, old, adv, m, clip_low=0.2, clip_high=0.6)
    assert higher.per_token[0, 0] == pytest.approx(-1.5)  # DAPO clip-higher lets the ratio reach 1.6
    same = clipped_policy_loss(old, old, adv, m, clip_low=0.2)
    assert float(same.clip_fraction) == 0.0 and float(same.approx_kl) == 0.0


def test_clipped_value_loss_by_hand():
    v, old, ret = T([[2.0, 0.0, 9.0]]), T([[1.0, 0.0, 0.0]]), T([[3.0, 1.0, 0.0]])
    m = T([[1.0, 1.0, 0.0]])
    loss, frac = clipped_value_loss(v, old, ret, m, clip=0.5)
    # token 0: (2-3)^2 = 1 vs clipped 1.5: (1.5-3)^2 = 2.25 -> 2.25; token 1: 1 vs 1 -> 1
    assert float(loss) == pytest.approx(0.5 * (2.25 + 1.0) / 2)
    assert float(frac) == pytest.approx(0.5)


def test_entropy_by_hand():
    logits = torch.log(T([[[0.5, 0.5], [0.9, 0.1]]]))
    e = entropy(logits, T([[1.0, 0.0]]))
    assert float(e) == pytest.approx(math.log(2))
    # at temperature 0.5 the distribution (0.9, 0.1) becomes (0.81, 0.01) / 0.82: the one sampled from
    q = T([0.81, 0.01]) / 0.82
    sharp = entropy(logits, T([[0.0, 1.0]]), temperature=0.5)
    assert float(sharp) == pytest.approx(float(-(q * q.log()).sum()))


def test_aggregations_by_hand():
    loss = T([[1.0, 2.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0]])
    m = T([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    assert float(AGGREGATIONS["token"](loss, m, 4)) == pytest.approx(10 / 4)
    assert float(AGGREGATIONS["sequence"](loss, m, 4)) == pytest.approx((2.0 + 4.0) / 2)
    assert float(AGGREGATIONS["fixed_length"](loss, m, 5)) == pytest.approx(10 / (2 * 5))
