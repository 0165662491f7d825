import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmfs.config import from_dict
from llmfs.model.attention import ATTENTION_IMPLS, Attention, attention_mask, manual_attention, sdpa_attention
from llmfs.model.config import ModelConfig
from llmfs.model.position import POSITIONS, positions_from_segments
from tests.reference.attention import loop_attention, loop_mask

T = 12
SEGMENTS = [0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2]
MASKS = {  # name -> kwargs of attention_mask / loop_mask
    "causal": {}, "window": dict(window=3), "window_sinks": dict(window=3, n_sinks=2),
    "segments": dict(segments=SEGMENTS), "window_segments": dict(window=4, n_sinks=1, segments=SEGMENTS),
}


def build(kw):
    seq = torch.arange(T)[None]
    seg = torch.tensor([kw["segments"]]) if "segments" in kw else None
    return attention_mask(seq, seq, window=kw.get("window"), n_sinks=kw.get("n_sinks", 0), q_seg=seg, k_seg=seg)


def qkv(H=4, Hkv=2, D=8, B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, H, T, D, generator=g), torch.randn(B, Hkv, T, D, generator=g),
            torch.randn(B, Hkv, T, D, generator=g))


@pytest.mark.parametrize("name", sorted(MASKS))
def test_mask_matches_loop_reference(name):
    assert torch.equal(build(MASKS[name])[0, 0], loop_mask(T, **MASKS[name]))


def test_window_mask_by_hand():
    # window 3, 1 sink: query 5 sees keys 3, 4, 5 and the sink 0.
    m = attention_mask(torch.arange(8)[None], torch.arange(8)[None], window=3, n_sinks=1)[0, 0]
    assert m[5].nonzero().flatten().tolist() == [0, 3, 4, 5]


@pytest.mark.parametrize("name", sorted(MASKS))
@pytest.mark.parametrize("impl", sorted(ATTENTION_IMPLS))
def test_kernels_match_loop_oracle(name, impl):
    q, k, v = qkv()
    mask = None if name == "causal" else build(MASKS[name])
    out = ATTENTION_IMPLS[impl](q, k, v, mask, 0.0)
    torch.testing.assert_close(out, loop_attention(q, k, v, loop_mask(T, **MASKS[name])), atol=1e-5, rtol=1e-5)


def test_sdpa_plain_path_equals_explicit_causal_mask():
    q, k, v = qkv(H=4, Hkv=4)
    explicit = build({})
    torch.testing.assert_close(sdpa_attention(q, k, v, None, 0.0), sdpa_attention(q, k, v, explicit, 0.0))
    torch.testing.assert_close(manual_attention(q, k, v, None, 0.0), sdpa_attention(q, k, v, explicit, 0.0))


def _cfg(**kw):
    base = dict(vocab_size=16, max_seq_len=32, d_model=32, n_layers=1, n_heads=4)
    return from_dict(ModelConfig, {**base, **kw})


@pytest.mark.parametrize("n_kv", [1, 2])
@pytest.mark.parametrize("impl", sorted(ATTENTION_IMPLS))
def test_gqa_equals_mha_with_repeated_kv(n_kv, impl):
    torch.manual_seed(0)
    gqa = Attention(_cfg(n_kv_heads=n_kv, attn_impl=impl), 0)
    mha = Attention(_cfg(attn_impl=impl), 0)
    rep, D = 4 // n_kv, 8
    with torch.no_grad():
        mha.q_proj.weight.copy_(gqa.q_proj.weight)
        mha.o_proj.weight.copy_(gqa.o_proj.weight)
        for name in ("k_proj", "v_proj"):  # kv head j serves query heads j*rep ... j*rep + rep - 1
            w = getattr(gqa, name).weight.view(n_kv, D, 32)
            getattr(mha, name).weight.copy_(w.repeat_interleave(rep, dim=0).reshape(32, 32))
    x = torch.randn(2, T, 32)
    rope = POSITIONS["rope"](_cfg(n_kv_heads=n_kv)).rotary(torch.arange(T)[None], torch.float32)  # (1, T, 1, D)
    torch.testing.assert_close(gqa(x, rope, None), mha(x, rope, None), atol=1e-6, rtol=1e-5)
    per_head = POSITIONS["rope"](_cfg()).rotary(torch.arange(T)[None], torch.float32)  # MHA's: (1, T, 4, D)
    assert per_head[0].shape == (1, T, 4, D) and rope[0].shape == (1, T, 1, D)
    assert torch.equal(mha(x, per_head, None), mha(x, rope, None))  # the per-head copies change no bit


@pytest.mark.parametrize("name", ["window_sinks", "segments", "window_segments"])
def test_attention_module_manual_equals_sdpa(name):
    torch.manual_seed(0)
    manual = Attention(_cfg(n_kv_heads=2, attn_impl="manual"), 0)
    sdpa = Attention(_cfg(n_kv_heads=2, attn_impl="sdpa"), 0)
    sdpa.load_state_dict(manual.state_dict())
    x = torch.randn(2, T, 32)
    mask = build(MASKS[name])
    torch.testing.assert_close(manual(x, None, mask), sdpa(x, None, mask), atol=1e-6, rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(T_=st.integers(1, 10), window=st.one_of(st.none(), st.integers(1, 10)), n_sinks=st.integers(0, 3),
       cuts=st.lists(st.booleans(), min_size=10, max_size=10))
def test_mask_property(T_, window, n_sinks, cuts):
    segments = torch.tensor(cuts[:T_]).long().cumsum(0).tolist()  # contiguous runs, new id at each True
    seg = torch.tensor([segments])
    sinks = n_sinks if window is not None else 0
    pos = positions_from_segments(seg)  # windows and sinks count from each segment's start
    got = attention_mask(pos, pos, window=window, n_sinks=sinks, q_seg=seg, k_seg=seg)[0, 0]
    expected = torch.zeros(T_, T_, dtype=torch.bool)
    for s in set(segments):  # per segment, the plain rule on its own positions
        idx = [i for i in range(T_) if segments[i] == s]
        block = loop_mask(len(idx), window=window, n_sinks=sinks)
        expected[torch.tensor(idx)[:, None], torch.tensor(idx)[None]] = block
    assert torch.equal(got, expected)
    assert got.diagonal().all()  # every query sees itself, so softmax never meets an all-masked row


@pytest.mark.parametrize("impl", sorted(ATTENTION_IMPLS))
def test_gradcheck_float64(impl):
    # Attention has no custom autograd Function (RMSNorm's has its own gradcheck in test_norm.py); this checks
    # the masked kernels' gradients anyway (a fully masked -inf row or a mask mix-up would show up here).
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 6, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    seq = torch.arange(6)[None]
    mask = attention_mask(seq, seq, window=2, n_sinks=1)
    assert torch.autograd.gradcheck(lambda a, b, c: ATTENTION_IMPLS[impl](a, b, c, mask, 0.0), (q, k, v))


@pytest.mark.parametrize("name", sorted(MASKS))
@pytest.mark.parametrize("heads", [(4, 4), (4, 2)])
def test_sdpa_stays_exact_fp32_when_matmuls_may_use_bf16(name, heads):
    """Under matmul_precision 'medium' (CPU fp32 matmuls with bf16 inputs) the sdpa kernel still runs in exact
    fp32: output, no-grad output and gradients equal exact-mode sdpa bit for bit (ExactFP32SDPA)."""
    mask = None if name == "causal" else build(MASKS[name])

    def run():
        q, k, v = (t.requires_grad_() for t in qkv(H=heads[0], Hkv=heads[1]))
        out = sdpa_attention(q, k, v, mask, 0.0)
        out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
        with torch.no_grad():
            plain = sdpa_attention(q, k, v, mask, 0.0)
        return out, plain, q.grad, k.grad, v.grad

    torch.set_float32_matmul_precision("highest")
    exact = run()
    torch.set_float32_matmul_precision("medium")  # the conftest fixture puts "highest" back
    assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"
    for got, want in zip(run(), exact, strict=True):
        assert torch.equal(got, want)
    assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"  # the mode is restored after forward and backward


def test_exact_fp32_sdpa_gradcheck_and_partial_grads():
    from llmfs.model.attention import ExactFP32SDPA

    q, k, v = (t.double().requires_grad_() for t in qkv(H=2, Hkv=1, D=4, B=1))
    mask = build(MASKS["window_sinks"])
    assert torch.autograd.gradcheck(lambda q, k, v: ExactFP32SDPA.apply(q, k, v, mask, 0.0), (q, k, v))
    # only some inputs needing a gradient (e.g. frozen projections): the others get None, the rest are right
    k2, v2 = k.detach(), v.detach()
    ExactFP32SDPA.apply(q, k2, v2, None, 0.0).sum().backward()
    want = torch.autograd.grad(sdpa_attention(q, k2, v2, None, 0.0).sum(), q)[0]
    torch.testing.assert_close(q.grad, want)
    # what backward needs is saved like any saved tensor: freed by a backward without retain_graph
    out = ExactFP32SDPA.apply(q, k, v, None, 0.0)
    out.sum().backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        out.sum().backward()


def test_double_backward_through_sdpa_under_bf16_matmuls_is_refused_not_wrong():
    # y.sum() gives a constant upstream gradient: once_differentiable would have returned a first gradient that
    # needs no gradient, so a penalty on it would silently lose the second-order term
    q, k, v = (t.requires_grad_() for t in qkv(B=1))
    torch.set_float32_matmul_precision("medium")  # the conftest fixture puts "highest" back
    with pytest.raises(RuntimeError, match="double backward .*attn_impl = 'manual'"):
        torch.autograd.grad(sdpa_attention(q, k, v, None, 0.0).sum(), q, create_graph=True)
    # the suggested path is twice differentiable (compared in exact fp32: manual's matmuls follow the mode)
    torch.set_float32_matmul_precision("highest")
    g, = torch.autograd.grad(manual_attention(q, k, v, None, 0.0).square().sum(), q, create_graph=True)
    g.square().sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0
    want = torch.autograd.grad(sdpa_attention(q, k, v, None, 0.0).square().sum(), q)[0]
    torch.testing.assert_close(g.detach(), want)


def test_exact_fp32_sdpa_frees_its_inner_graph_after_backward():
    """The inner graph lives as long as the saved tensors and no longer (a reference cycle through it once
    leaked ~7 MB per training step)."""
    import gc
    import weakref

    from llmfs.model.attention import ExactFP32SDPA

    q, k, v = (t.requires_grad_() for t in qkv())
    out = ExactFP32SDPA.apply(q, k, v, None, 0.0)
    inner_out = weakref.ref(out.grad_fn.saved_tensors[0])  # torch keeps a tensor's Python object while it lives
    out.sum().backward()
    del out
    gc.collect()
    assert inner_out() is None


def test_activation_checkpointing_under_bf16_matmuls():
    """Checkpointed blocks recompute the attention in backward: the same gradients as without checkpointing."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    from llmfs.model.transformer import Transformer

    torch.set_float32_matmul_precision("medium")
    cfg = _cfg(n_kv_heads=2, n_layers=2, attn_impl="sdpa")
    ids = torch.randint(0, cfg.vocab_size, (2, 10), generator=torch.Generator().manual_seed(0))
    grads = []
    for wrap in (False, True):
        model = Transformer(cfg, generator=torch.Generator().manual_seed(0))
        if wrap:
            for i, layer in enumerate(model.layers):
                model.layers[i] = checkpoint_wrapper(layer)
        model(ids).logits.square().mean().backward()
        grads.append([p.grad for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a, b)


def test_compiled_sdpa_stays_exact_under_bf16_matmuls():
    """train.compile with matmul_precision 'medium': the compiled call keeps attention exact (the wrapper runs
    outside the graph), forward and gradients equal to exact-mode eager sdpa."""
    q, k, v = (t.requires_grad_() for t in qkv())
    torch.set_float32_matmul_precision("medium")
    out = torch.compile(lambda q, k, v: sdpa_attention(q, k, v, None, 0.0))(q, k, v)
    out.sum().backward()
    got = (out, q.grad, k.grad, v.grad)
    torch.set_float32_matmul_precision("highest")
    q2, k2, v2 = (t.detach().requires_grad_() for t in (q, k, v))
    want = sdpa_attention(q2, k2, v2, None, 0.0)
    want.sum().backward()
    for a, b in zip(got, (want, q2.grad, k2.grad, v2.grad), strict=True):
        assert torch.equal(a, b)


def test_compiled_sdpa_has_no_graph_break_in_exact_mode():
    """Checking the matmul mode must not break a compiled graph (it did, in every layer, on CPU: twice, through
    the mkldnn flag and then through torch.get_float32_matmul_precision). Ops on both sides of the attention, as
    in a model: a break at the very start of a function would not show in its graph count."""
    q, k, v = qkv()
    explained = torch._dynamo.explain(lambda q, k, v: sdpa_attention(q * 2, k, v, None, 0.0) + 1)(q, k, v)
    assert explained.graph_count == 1 and explained.graph_break_count == 0


def test_a_compiled_model_sees_a_change_of_the_matmul_precision():
    """The precision check is read at trace time; leaving "highest" afterwards retraces (dynamo guards the TF32
    flag; between "high" and "medium" the traced value stays: attention.py says why that is enough)."""
    from llmfs.model.attention import cpu_matmuls_in_bf16

    torch._dynamo.reset()
    f = torch.compile(lambda x: x * (2.0 if cpu_matmuls_in_bf16(x) else 3.0), backend="eager")
    x = torch.ones(3)
    try:
        assert f(x).tolist() == [3.0] * 3
        torch.set_float32_matmul_precision("medium")
        assert f(x).tolist() == [2.0] * 3
    finally:
        torch.set_float32_matmul_precision("highest")
        torch._dynamo.reset()
