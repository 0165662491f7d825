import math

import pytest
import torch

from llmfs.config import from_dict
from llmfs.model.config import ModelConfig
from llmfs.model.mlp import MLPS
from llmfs.model.moe import MoE, router_losses


def cfg(**kw):
    base = dict(vocab_size=16, max_seq_len=16, d_model=8, n_layers=1, n_heads=2, d_ff=16, n_experts=4, top_k=2)
    return from_dict(ModelConfig, {**base, **kw})


@pytest.mark.parametrize("mlp", ["swiglu", "gelu"])
def test_one_expert_top1_equals_dense_mlp(mlp):
    torch.manual_seed(0)
    moe = MoE(cfg(n_experts=1, top_k=1, mlp=mlp))
    dense = MLPS[mlp](8, 16, False)
    dense.load_state_dict(moe.experts[0].state_dict())
    x = torch.randn(2, 5, 8)
    y, stats = moe(x)
    torch.testing.assert_close(y, dense(x))
    assert stats.dropped.item() == 0 and stats.expert_load.tolist() == [1.0]


def test_router_losses_by_hand():
    # Two tokens, two experts, top-1. logits row 0 = [ln 3, 0] -> probs [3/4, 1/4]; row 1 = [0, 0] -> [1/2, 1/2].
    # Chosen experts: token 0 -> 0, token 1 -> 0 (tie: topk picks index 0). f = [2/2, 0/2] = [1, 0].
    # P = mean probs = [(3/4 + 1/2)/2, (1/4 + 1/2)/2] = [5/8, 3/8]. aux = E * sum f_i P_i = 2 * (1 * 5/8) = 5/4.
    # logsumexp: row 0 = ln(3 + 1) = ln 4, row 1 = ln 2. z = ((ln 4)^2 + (ln 2)^2) / 2 = 5/2 (ln 2)^2.
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    chosen = torch.tensor([[0], [0]])
    aux, z, load = router_losses(logits, chosen, 2)
    torch.testing.assert_close(aux, torch.tensor(1.25))
    torch.testing.assert_close(z, torch.tensor(2.5 * math.log(2) ** 2))
    assert load.tolist() == [1.0, 0.0]


def test_balanced_routing_gives_aux_one():
    # Uniform router probs and each expert chosen equally often: f_i = P_i = 1/E, aux = E * E * (1/E^2) = 1.
    logits = torch.zeros(4, 4)
    aux, _, _ = router_losses(logits, torch.tensor([[0, 1], [2, 3], [0, 1], [2, 3]]), 4)
    torch.testing.assert_close(aux, torch.tensor(1.0))


def test_topk_weights_renormalised_and_output_matches_loop():
    torch.manual_seed(1)
    moe = MoE(cfg(shared_expert=True))
    x = torch.randn(7, 8)
    y, _ = moe(x)
    probs = moe.router(x).softmax(-1)
    expected = moe.shared_expert(x)
    for n in range(7):  # token by token, the slow obvious way
        w, e = probs[n].topk(2)
        w = w / w.sum()
        for j in range(2):
            expected[n] += w[j] * moe.experts[int(e[j])](x[n])
    torch.testing.assert_close(y, expected, atol=1e-6, rtol=1e-5)


def test_router_receives_gradient():
    torch.manual_seed(2)
    moe = MoE(cfg())
    y, stats = moe(torch.randn(10, 8))
    (y.square().sum() + stats.aux_loss + stats.z_loss).backward()
    assert moe.router.weight.grad is not None and moe.router.weight.grad.abs().sum() > 0
    moe.zero_grad()
    y, _ = moe(torch.randn(10, 8))
    y.square().sum().backward()  # through the renormalised gate weights alone
    assert moe.router.weight.grad.abs().sum() > 0


def test_capacity_drops_counted():
    # 6 tokens, 2 experts, top-1, capacity_factor 0.5 -> capacity = ceil(0.5 * 6 * 1 / 2) = 2 per expert.
    # The router is forced so tokens 0..4 pick expert 0 and token 5 picks expert 1: expert 0 keeps tokens
    # 0 and 1 (earliest first) and drops 2, 3, 4; expert 1 keeps token 5. Dropped tokens get output 0.
    moe = MoE(cfg(n_experts=2, top_k=1, capacity_factor=0.5))
    x = torch.randn(6, 8).abs() + 0.1
    x[5] = -x[5]
    with torch.no_grad():
        moe.router.weight.copy_(torch.stack([torch.ones(8), -torch.ones(8)]))
    y, stats = moe(x)
    assert moe.capacity(6) == 2 and stats.dropped.item() == 3
    torch.testing.assert_close(stats.expert_load, torch.tensor([5 / 6, 1 / 6]))  # counted before dropping
    assert torch.equal(y[2:5], torch.zeros(3, 8))
    torch.testing.assert_close(y[:2], moe.experts[0](x[:2]))
    torch.testing.assert_close(y[5], moe.experts[1](x[5]))


def test_capacity_prefers_first_choices():
    # top-2 with 2 experts: every token goes to both. capacity = ceil(0.5 * 4 * 2 / 2) = 2 per expert.
    # Tokens 0, 1 prefer expert 0; tokens 2, 3 prefer expert 1. First choices fill both queues, so every
    # second choice is dropped: 4 drops, and each token gets only its first expert, at full (renormalised) weight.
    moe = MoE(cfg(n_experts=2, top_k=2, capacity_factor=0.5))
    x = torch.randn(4, 8).abs() + 0.1
    x[2:] = -x[2:]
    with torch.no_grad():
        moe.router.weight.copy_(torch.stack([torch.ones(8), -torch.ones(8)]) * 0.1)
    y, stats = moe(x)
    assert stats.dropped.item() == 4
    w = moe.router(x).softmax(-1).max(-1).values[:, None]  # first-choice weight after renormalising over 2
    torch.testing.assert_close(y[:2], w[:2] * moe.experts[0](x[:2]))
    torch.testing.assert_close(y[2:], w[2:] * moe.experts[1](x[2:]))


def test_padding_left_out_of_routing_losses_and_capacity():
    # 2 rows of 5 tokens, the second row's last 3 are padding. With keep, the layer must act exactly as on the
    # 7 real tokens alone: same outputs there, zero at the pads, and the same aux, z, load and drops (capacity
    # counts real tokens: ceil(1.0 * 7 * 2 / 4) = 4 slots per expert, not ceil(1.0 * 10 * 2 / 4) = 5).
    moe = MoE(cfg(capacity_factor=1.0, shared_expert=True))
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0))
    keep = torch.tensor([[True] * 5, [True, True, False, False, False]])
    y, stats = moe(x, keep)
    alone, want = moe(x[keep])  # (7, D)
    torch.testing.assert_close(y[keep], alone)
    assert torch.equal(y[~keep], torch.zeros(3, 8))
    for name in ("aux_loss", "z_loss", "expert_load", "dropped"):
        torch.testing.assert_close(getattr(stats, name), getattr(want, name))
    _, unmasked = moe(x)  # the pads would otherwise count
    assert not torch.allclose(unmasked.expert_load, want.expert_load)
