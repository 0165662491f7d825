import pytest
import torch
import torch.nn.functional as F

from llmfs.model.norm import NORMS, LayerNorm, RMSNorm, build_norm


def _randomise(norm, g):
    with torch.no_grad():
        for p in norm.parameters():
            p.copy_(torch.randn(p.shape, generator=g))


def test_rmsnorm_matches_torch():
    g = torch.Generator().manual_seed(0)
    norm = RMSNorm(16, 1e-5, False)
    _randomise(norm, g)
    x = torch.randn(3, 5, 16, generator=g)
    torch.testing.assert_close(norm(x), F.rms_norm(x, (16,), norm.weight, 1e-5))
    by_hand = x / torch.sqrt(x.square().mean(-1, keepdim=True) + 1e-5) * norm.weight
    torch.testing.assert_close(norm(x), by_hand)


@pytest.mark.parametrize("bias", [True, False])
def test_layernorm_matches_torch_and_formula(bias):
    g = torch.Generator().manual_seed(1)
    norm = LayerNorm(16, 1e-5, bias)
    _randomise(norm, g)
    x = torch.randn(3, 5, 16, generator=g) * 3 + 1
    ref = F.layer_norm(x, (16,), norm.weight, norm.bias, 1e-5)
    torch.testing.assert_close(norm(x), ref)
    by_hand = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5)
    by_hand = by_hand * norm.weight + (norm.bias if bias else 0)
    torch.testing.assert_close(norm(x), by_hand)


@pytest.mark.parametrize("kind", sorted(NORMS))
def test_low_precision_input_computed_in_fp32(kind):
    g = torch.Generator().manual_seed(2)
    norm = build_norm(kind, 64, 1e-5, False)
    x = (torch.randn(4, 64, generator=g) * 300).to(torch.float16)  # x^2 overflows fp16 (> 65504)
    y = norm(x)
    assert y.dtype == torch.float16 and torch.isfinite(y).all()
    torch.testing.assert_close(y, norm(x.float()).half())


def test_rmsnorm_never_has_bias():
    assert build_norm("rmsnorm", 8, 1e-5, True).state_dict().keys() == {"weight"}
    assert build_norm("layernorm", 8, 1e-5, True).state_dict().keys() == {"weight", "bias"}
    with pytest.raises(ValueError, match="RMSNorm has no bias"):
        RMSNorm(8, 1e-5, True)


def test_rmsnorm_hand_written_backward_passes_gradcheck():
    from llmfs.model.norm import RMSNormFunction

    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: RMSNormFunction.apply(a, b, 1e-5), (x, w))


def test_rmsnorm_gradients_equal_autograd_through_the_formula():
    g = torch.Generator().manual_seed(4)
    norm = RMSNorm(16, 1e-5, False)
    _randomise(norm, g)
    x = torch.randn(3, 5, 16, generator=g, requires_grad=True)
    gy = torch.randn(3, 5, 16, generator=g)
    norm(x).backward(gy)
    w = norm.weight.detach().clone().requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    (x2 * torch.rsqrt(x2.square().mean(-1, keepdim=True) + 1e-5) * w).backward(gy)
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(norm.weight.grad, w.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_rmsnorm_without_a_graph_gives_the_same_bits_as_with_one(dtype):
    # no_grad / inference_mode take F.rms_norm, a graph takes RMSNormFunction: generation and evaluation must see
    # exactly the numbers training computes
    g = torch.Generator().manual_seed(5)
    norm = RMSNorm(16, 1e-5, False)
    _randomise(norm, g)
    x = torch.randn(3, 5, 16, generator=g).to(dtype)
    graph = norm(x)
    assert graph.grad_fn is not None and graph.dtype == dtype
    with torch.no_grad():
        assert torch.equal(norm(x), graph.detach())
    with torch.inference_mode():
        assert torch.equal(norm(x), graph.detach())


@pytest.mark.parametrize("shape", [(7, 16), (2, 3, 4, 16)])
def test_rmsnorm_backward_with_a_frozen_weight_and_other_leading_dims(shape):
    # the hand-written backward flattens the leading dims into rows and skips dL/dw when w needs no gradient
    g = torch.Generator().manual_seed(6)
    norm = RMSNorm(16, 1e-5, False)
    _randomise(norm, g)
    norm.weight.requires_grad_(False)
    x = torch.randn(shape, generator=g, requires_grad=True)
    gy = torch.randn(shape, generator=g)
    norm(x).backward(gy)
    x2 = x.detach().clone().requires_grad_(True)
    (x2 * torch.rsqrt(x2.square().mean(-1, keepdim=True) + 1e-5) * norm.weight).backward(gy)
    assert norm.weight.grad is None
    torch.testing.assert_close(x.grad, x2.grad)


@pytest.mark.parametrize("kind", sorted(NORMS))
def test_norm_gradients_do_not_depend_on_the_matmul_precision(kind):
    # run.matmul_precision = "medium" lets fp32 matmuls take bf16 inputs (CPUs with bf16 units); a norm's
    # reductions must not be written as matmuls (a mat-vec for dL/dw once was: dL/dw off by 0.2 under "medium")
    g = torch.Generator().manual_seed(7)
    norm = build_norm(kind, 128, 1e-5, False)
    _randomise(norm, g)
    x = torch.randn(12, 64, 128, generator=g)
    gy = torch.randn(12, 64, 128, generator=g)

    def grads():
        xi = x.clone().requires_grad_(True)
        norm.weight.grad = None
        norm(xi).backward(gy)
        return xi.grad, norm.weight.grad

    torch.set_float32_matmul_precision("highest")
    exact = grads()
    torch.set_float32_matmul_precision("medium")  # the conftest fixture puts "highest" back
    for got, want in zip(grads(), exact, strict=True):
        assert torch.equal(got, want)
