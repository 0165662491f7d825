"""use_decode_linears: the same model (Parameters, state_dict, tie), decode-step products through row blocks of the
weights that agree with F.linear, greedy tokens unchanged for every attention configuration."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llmfs.infer import decode_linear as dl
from llmfs.infer.decode_linear import (MAX_ROWS, RowBlockLinear, row_block_product, transposed_rows,
                                       use_decode_linears)
from llmfs.infer.generate import generate
from llmfs.infer.sampling import SamplingConfig
from tests.model.test_kv_cache import CONFIGS, make

PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10]]


@pytest.mark.parametrize("n", [1, 2, 5, MAX_ROWS])
@pytest.mark.parametrize(("d_out", "blocks"), [(12, 2), (12, 4), (13, 2), (13, 3), (7, 7)])
def test_row_block_product_equals_f_linear(n, d_out, blocks):
    g = torch.Generator().manual_seed(n * 100 + d_out)
    w = torch.randn(d_out, 9, generator=g)
    rows = torch.randn(n, 9, generator=g)
    y = row_block_product(w, rows, blocks)
    assert y.shape == (n, d_out) and y.is_contiguous()
    torch.testing.assert_close(y, F.linear(rows, w), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("n", [1, 6])
def test_module_keeps_the_parameters_and_adds_the_bias(n, monkeypatch):
    lin = nn.Linear(6, 10, bias=True)  # 10 rows in 3 blocks: 9 in the blocks, 1 through F.linear, both biased
    m = RowBlockLinear(lin, 3)
    assert m.weight is lin.weight and m.bias is lin.bias
    assert list(m.state_dict()) == list(lin.state_dict())
    x = torch.randn(1, 1, 6) if n == 1 else torch.randn(2, 3, 6)  # (B, T, in): n rows, the row-block path
    with torch.inference_mode():
        torch.testing.assert_close(m(x), lin(x), atol=1e-6, rtol=1e-6)
        big = torch.randn(2, MAX_ROWS, 6)  # more than MAX_ROWS rows: F.linear itself, the same bits as training
        assert torch.equal(m(big), lin(big))
    with torch.no_grad():  # an in-place update of the Parameters reaches the blocks (views, not copies)
        lin.weight.mul_(-2.0)
        lin.bias.add_(1.0)
    with torch.inference_mode():
        torch.testing.assert_close(m(x), lin(x), atol=1e-6, rtol=1e-6)
        calls = []
        monkeypatch.setattr(dl, "transposed_rows", lambda *a: calls.append(1) or transposed_rows(*a))
        m(x)
        assert calls  # the decode path: the row-block product, not F.linear
    # replaced Parameters (load_state_dict(assign=True), .to(dtype)): the views are made again
    w2, b2 = torch.randn(10, 6), torch.randn(10)
    m.load_state_dict({"weight": w2, "bias": b2}, assign=True)
    with torch.inference_mode():
        torch.testing.assert_close(m(x), F.linear(x, w2, b2), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(m.double()(x.double()), F.linear(x.double(), w2.double(), b2.double()))
    m.float()
    lin = nn.Linear(6, 10)
    lin.weight, lin.bias = m.weight, m.bias
    y = m(x)  # with gradients on (nothing that generates does this): F.linear, so gradients reach the Parameters
    assert torch.equal(y, lin(x))
    y.sum().backward()
    assert lin.weight.grad is not None and lin.bias.grad is not None


@torch.no_grad()
@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("tie", [True, False])
def test_same_model_logits_and_tokens(name, tie):
    before = make({**CONFIGS[name], "tie_embeddings": tie})
    after = make({**CONFIGS[name], "tie_embeddings": tie})
    params = dict(after.named_parameters())
    assert use_decode_linears(after, blocks=2) is after
    assert not any(type(m) is nn.Linear for m in after.modules())  # every projection (router included) swapped
    assert any(isinstance(m, RowBlockLinear) for m in after.modules())
    assert dict(after.named_parameters()) == params  # the same Parameter objects under the same names
    for (k, a), (_, b) in zip(before.state_dict().items(), after.state_dict().items()):
        assert torch.equal(a, b), k
    assert (after.lm_head.weight is after.embed_tokens.weight) == tie
    x = torch.randint(0, 17, (1, MAX_ROWS), generator=torch.Generator().manual_seed(3))  # row-block path
    torch.testing.assert_close(after(x).logits, before(x).logits, atol=1e-5, rtol=1e-5)
    greedy = SamplingConfig(temperature=0, max_new_tokens=8)
    assert generate(after, PROMPTS, greedy) == generate(before, PROMPTS, greedy)


def test_what_is_left_alone():
    m = make(CONFIGS["classic"])
    head = nn.Linear(m.cfg.d_model, 1)  # a reward model's score: fewer rows than blocks
    m.add_module("score", head)
    use_decode_linears(m, blocks=2)
    assert m.score is head
    other = make(CONFIGS["mha_rope"])
    other.layers[0].self_attn.q_proj.weight.data = other.layers[0].self_attn.q_proj.weight.data.t().contiguous().t()
    use_decode_linears(other, blocks=2)
    assert type(other.layers[0].self_attn.q_proj) is nn.Linear  # a non-contiguous weight has no row-block views
    assert isinstance(other.layers[0].self_attn.k_proj, RowBlockLinear)


def test_transposed_rows_have_the_fast_strides_whatever_a_size_one_dim_carries():
    """(blocks, in, N) with strides (0, 1, in): also from a (1, in) row whose strides are (1, 1) (inductor's
    layout for GPT-2's GELU output), where `rows.t().expand` gave (0, 1, 1) and the slow product."""
    x = torch.randn(1, 6)
    odd = x.as_strided((1, 6), (1, 1))
    assert torch.equal(odd, x) and odd.stride() == (1, 1)
    for rows in (x, odd, torch.randn(3, 6)):
        t = transposed_rows(rows, 2)
        assert t.shape == (2, 6, rows.shape[0]) and t.stride() == (0, 1, 6)
        assert torch.equal(t[1], rows.t())
    cols = torch.randn(6, 3).t()  # (3, 6), not row-major: the expand path, same values
    assert torch.equal(transposed_rows(cols, 2)[0], cols.t())
