"""Optimizers: the readable AdamW equals torch.optim.AdamW; decay groups are split the GPT-2 way."""

from __future__ import annotations

import torch

from llmfs.train.optim import AdamWScratch, OptimConfig, build_optimizer, param_groups


def small_model(seed=0):
    torch.manual_seed(seed)
    emb = torch.nn.Embedding(50, 16)
    model = torch.nn.Sequential(emb, torch.nn.LayerNorm(16), torch.nn.Linear(16, 32), torch.nn.GELU(),
                                torch.nn.Linear(32, 50, bias=False))
    return model


def run(model, opt, steps=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        ids = torch.randint(0, 50, (8,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(ids), ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_scratch_adamw_equals_torch_adamw():
    cfg = dict(lr=3e-3, betas=(0.9, 0.95), eps=1e-8)
    a, b = small_model(), small_model()
    opt_a = torch.optim.AdamW(param_groups(a, 0.1), foreach=False, **cfg)
    opt_b = AdamWScratch(param_groups(b, 0.1), **cfg)
    assert run(a, opt_a) == run(b, opt_b)
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, rtol=0, atol=0, msg=n)
    for pa, pb in zip(a.parameters(), b.parameters()):
        for k in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(opt_b.state[pb][k], opt_a.state[pa][k], rtol=0, atol=0)


def test_scratch_adamw_close_to_the_fused_path():
    a, b = small_model(), small_model()
    opt_a = build_optimizer(a, OptimConfig(lr=3e-3), torch.device("cpu"))
    opt_b = build_optimizer(b, OptimConfig(name="adamw_scratch", lr=3e-3), torch.device("cpu"))
    assert isinstance(opt_b, AdamWScratch) and opt_a.defaults["fused"] is True  # the CPU default
    run(a, opt_a), run(b, opt_b)
    for pa, pb in zip(a.parameters(), b.parameters()):  # a fused kernel rounds differently: close, not equal
        torch.testing.assert_close(pb, pa, rtol=1e-5, atol=1e-6)


def test_decay_groups():
    model = small_model()
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == ["0.weight", "2.weight", "4.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == ["1.bias", "1.weight", "2.bias"]
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0


def test_tied_parameter_counted_once():
    model = small_model()
    model[4].weight = model[0].weight
    decay, _ = param_groups(model, 0.1)
    assert sum(p is model[0].weight for p in decay["params"]) == 1
