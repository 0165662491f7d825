import dataclasses

import pytest
import torch

from llmfs.config import from_dict
from llmfs.errors import ConfigError
from llmfs.model import ModelConfig, Transformer

BASE = dict(vocab_size=10, max_seq_len=8, d_model=8, n_layers=2, n_heads=2)


def cfg(**kw) -> ModelConfig:
    return from_dict(ModelConfig, {**BASE, **kw})


CLASSIC = dict(position="learned", norm="layernorm", mlp="gelu", bias=True)


def model(c: ModelConfig, seed: int = 0) -> Transformer:
    return Transformer(c, generator=torch.Generator().manual_seed(seed)).eval()


def test_num_params_by_hand_modern():
    # V=10, d=8, 2 layers, 2 heads of 4, 1 kv head, swiglu d_ff=16, rmsnorm, rope, tied, no bias.
    # embed 10*8 = 80. Per layer: q 8*8 + k 8*4 + v 8*4 + o 8*8 = 192; mlp 3*8*16 = 384; 2 norms 16 -> 592.
    # Total 80 + 2*592 + final norm 8 = 1272 (lm_head tied). Without embeddings: 1192.
    m = model(cfg(n_kv_heads=1, d_ff=16))
    assert m.num_params() == 1272 and m.num_params(exclude_embeddings=True) == 1192
    assert m.lm_head.weight is m.embed_tokens.weight
    # Active matmul weights: 2 * (192 + 384) + lm_head 80 = 1232; attention term 12 * L * H * Dh * T.
    assert m.active_matmul_params() == 1232
    assert m.flops_per_token(8) == 6 * 1232 + 12 * 2 * 2 * 4 * 8


def test_num_params_by_hand_classic_untied():
    # 1 layer, gelu d_ff = 4*8 = 32, biases, layernorm, learned positions, untied head.
    # embed 80, positions 8*8 = 64. attn 4 * (64 + 8) = 288; mlp (8*32 + 32) + (32*8 + 8) = 552;
    # 2 layernorms 2 * 16 = 32 -> layer 872. final norm 16, lm_head 80. Total 1112; without embeddings 968.
    m = model(cfg(n_layers=1, tie_embeddings=False, **CLASSIC))
    assert m.num_params() == 1112 and m.num_params(exclude_embeddings=True) == 968


def test_num_params_moe():
    # 2 layers, first dense. Dense layer: attn 256 + swiglu 3*8*16 = 384 + norms 16 = 656.
    # MoE layer: attn 256 + router 8*4 = 32 + 4 experts * 384 + shared 384 + norms 16 = 2224.
    # embed 80 + 656 + 2224 + norm 8 = 2968. Active per token: MoE layer has top_k 2 + shared = 3 experts.
    m = model(cfg(d_ff=16, n_experts=4, top_k=2, first_dense_layers=1, shared_expert=True))
    assert m.num_params() == 2968
    assert m.active_matmul_params() == (256 + 384) + (256 + 3 * 384 + 32) + 80


def test_init_scaled_by_depth():
    c = from_dict(ModelConfig, dict(vocab_size=256, max_seq_len=16, d_model=128, n_layers=8, n_heads=4,
                                    bias=True, norm="layernorm"))
    m = model(c)
    resid = 0.02 / 4  # init_std / sqrt(2 * 8)
    assert abs(m.layers[3].self_attn.o_proj.weight.std().item() - resid) < 0.1 * resid
    assert abs(m.layers[3].mlp.down_proj.weight.std().item() - resid) < 0.1 * resid
    assert abs(m.layers[3].self_attn.q_proj.weight.std().item() - 0.02) < 0.002
    assert abs(m.embed_tokens.weight.std().item() - 0.02) < 0.002
    assert torch.equal(m.layers[0].self_attn.q_proj.bias, torch.zeros(128))
    assert torch.equal(m.norm.weight, torch.ones(128))


def test_parameter_names_follow_hf_llama():
    names = set(model(cfg(tie_embeddings=False)).state_dict())
    for n in ["embed_tokens.weight", "norm.weight", "lm_head.weight", "layers.1.input_layernorm.weight",
              "layers.1.post_attention_layernorm.weight", "layers.0.mlp.gate_proj.weight"] + [
              f"layers.0.self_attn.{p}_proj.weight" for p in "qkvo"]:
        assert n in names, n
    assert "embed_positions.weight" in set(model(cfg(**CLASSIC)).state_dict())


@pytest.mark.parametrize("kw", [{}, CLASSIC, dict(position="sinusoidal"), dict(window=3, n_sinks=1),
                                dict(n_kv_heads=1, mlp="relu2")])
def test_manual_equals_sdpa(kw):
    x = torch.randint(0, 10, (2, 8))
    a = model(cfg(attn_impl="manual", **kw))(x).logits
    b = model(cfg(attn_impl="sdpa", **kw))(x).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kw", [{}, CLASSIC, dict(window=2, n_sinks=1, attn_impl="manual"),
                                dict(position="sinusoidal", n_kv_heads=1)])
def test_segments_equal_separate_runs(kw):
    m = model(cfg(**kw))
    x = torch.randint(0, 10, (2, 8))
    seg = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 2], [7, 7, 7, 7, 7, 9, 9, 9]])
    packed = m(x, segment_ids=seg).logits
    for b in range(2):
        for s in seg[b].unique():
            idx = (seg[b] == s).nonzero().flatten()
            alone = m(x[b:b + 1, idx]).logits[0]
            torch.testing.assert_close(packed[b, idx], alone, atol=1e-5, rtol=1e-5)


def test_output_fields_and_hidden():
    m = model(cfg(tie_embeddings=False))
    out = m(torch.randint(0, 10, (2, 5)), return_hidden=True)
    assert out.logits.shape == (2, 5, 10) and out.hidden.shape == (2, 5, 8)
    torch.testing.assert_close(out.logits, m.lm_head(out.hidden))
    assert out.aux_loss.item() == 0 and out.z_loss.item() == 0 and out.expert_load == ()
    assert m(torch.randint(0, 10, (1, 3)), return_logits=False).logits is None


def test_moe_model_outputs_and_backward():
    c = cfg(d_ff=16, n_layers=3, n_experts=4, top_k=2, moe_every=2, capacity_factor=1.0, aux_loss_coef=0.5,
            z_loss_coef=0.25)
    m = model(c).train()
    out = m(torch.randint(0, 10, (2, 8)))
    assert len(out.expert_load) == 2 and len(out.dropped) == 2  # layers 0 and 2
    assert all(abs(load.sum().item() - 1) < 1e-6 for load in out.expert_load)
    stats = [m.layers[i].mlp(torch.zeros(1, 8))[1] for i in (0, 2)]  # sanity: the per-layer API
    assert all(s.aux_loss.ndim == 0 for s in stats)
    assert out.aux_loss.item() > 0 and out.z_loss.item() > 0
    (out.logits.square().mean() + out.aux_loss + out.z_loss).backward()
    assert m.layers[0].mlp.router.weight.grad.abs().sum() > 0


def test_dropout_only_in_training():
    m = model(cfg(dropout=0.5))
    x = torch.randint(0, 10, (2, 8))
    torch.testing.assert_close(m(x).logits, m(x).logits)
    m.train()
    assert not torch.allclose(m(x).logits, m(x).logits)


def test_every_parameter_gets_gradient():
    for kw in ({}, CLASSIC):
        m = model(cfg(tie_embeddings=False, **kw)).train()
        m(torch.randint(0, 10, (2, 8))).logits.sum().backward()
        for name, p in m.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_learned_positions_past_table_raise():
    m = model(cfg(**CLASSIC))
    with pytest.raises(ConfigError, match="max_seq_len = 8"):
        m(torch.randint(0, 10, (1, 9)))
    model(cfg())(torch.randint(0, 10, (1, 20)))  # rope runs past max_seq_len without cache


def test_device_and_dtype_arguments():
    m = Transformer(cfg(), dtype=torch.float64)
    assert m.lm_head.weight.dtype == torch.float64 and m.lm_head.weight is m.embed_tokens.weight
    a = Transformer(cfg(), generator=torch.Generator().manual_seed(3))
    b = Transformer(cfg(), generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert dataclasses.asdict(a.cfg) == dataclasses.asdict(cfg())


@pytest.mark.parametrize("kw", [dict(attn_impl="manual", window=3, n_sinks=1), dict(CLASSIC, attn_impl="manual"),
                                dict(n_experts=2, top_k=1, d_ff=8)])
def test_gradcheck_whole_model_float64(kw):
    # No custom autograd Function exists; this checks the float64 path stays float64 end to end (norms, softmax
    # and router compute in at least float32, never below the input precision).
    m = Transformer(cfg(n_layers=1, d_model=4, n_heads=2, **kw), dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0))
    x = torch.randint(0, 10, (1, 5), generator=torch.Generator().manual_seed(1))
    names = ["layers.0.self_attn.q_proj.weight", "layers.0.input_layernorm.weight", "layers.0.mlp.router.weight"
             if m.cfg.n_experts else "layers.0.mlp.up_proj.weight"]
    params = tuple(dict(m.named_parameters())[n].detach().clone().requires_grad_() for n in names)

    def logits(*ps):
        return torch.func.functional_call(m, dict(zip(names, ps)), (x,)).logits

    assert logits(*params).dtype == torch.float64
    assert torch.autograd.gradcheck(logits, params)


def test_sdpa_gets_is_causal_on_the_plain_path_and_a_mask_otherwise(monkeypatch):
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, **kw):
        calls.append((attn_mask is None, is_causal))
        return real(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    x = torch.randint(0, 10, (1, 8))
    model(cfg())(x)
    assert calls == [(True, True)] * 2  # no mask tensor: the flash kernel is eligible on CUDA
    calls.clear()
    model(cfg(window=3))(x)
    model(cfg())(x, segment_ids=torch.zeros(1, 8, dtype=torch.long))
    assert calls == [(False, False)] * 4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kw", [{}, CLASSIC, dict(window=3, n_sinks=1, n_kv_heads=1)])
def test_cuda_matches_cpu(kw):
    m = model(cfg(**kw))
    x = torch.randint(0, 10, (2, 8))
    ref = m(x).logits
    got = m.to("cuda")(x.to("cuda")).logits.cpu()
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        low = m(x.to("cuda")).logits.float().cpu()
    torch.testing.assert_close(low, ref, atol=5e-2, rtol=5e-2)


def test_token_mask_keeps_padding_out_of_moe_routing():
    """A right-padded row with token_mask routes like the same row without its padding: same logits at the real
    positions and the same aux / z losses, expert loads and drops (capacity counts real tokens only)."""
    from llmfs.config import from_dict
    from llmfs.model.config import ModelConfig
    from llmfs.model.transformer import Transformer

    cfg = from_dict(ModelConfig, dict(vocab_size=32, max_seq_len=16, d_model=16, n_layers=2, n_heads=2, d_ff=32,
                                      n_experts=4, top_k=2, capacity_factor=1.0))
    m = Transformer(cfg, generator=torch.Generator().manual_seed(0)).eval()
    ids = torch.randint(1, 32, (1, 6), generator=torch.Generator().manual_seed(1))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)  # (1, 10)
    keep = torch.arange(10)[None] < 6
    a, b = m(ids), m(padded, token_mask=keep)
    torch.testing.assert_close(b.logits[:, :6], a.logits)
    torch.testing.assert_close(b.aux_loss, a.aux_loss)
    torch.testing.assert_close(b.z_loss, a.z_loss)
    for la, lb in zip(a.expert_load, b.expert_load):
        torch.testing.assert_close(lb, la)
    assert [int(d) for d in b.dropped] == [int(d) for d in a.dropped]
    assert not torch.allclose(m(padded).aux_loss, a.aux_loss)  # without the mask the pads are routed
