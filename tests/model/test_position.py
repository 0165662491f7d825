import math

import pytest
import torch

from llmfs.config import from_dict
from llmfs.errors import ConfigError
from llmfs.model.config import ModelConfig
from llmfs.model.position import (POSITIONS, apply_rope, check_positions, positions_from_segments)
from tests.reference.rope import rope_complex


def cfg(**kw):
    return from_dict(ModelConfig, {**dict(vocab_size=32, max_seq_len=16, d_model=32, n_layers=1, n_heads=2), **kw})


@pytest.mark.parametrize("theta", [10000.0, 500.0])
def test_rope_matches_complex_reference(theta):
    c = cfg(rope_theta=theta)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 7, c.head_dim, generator=g, dtype=torch.float64)
    pos = torch.tensor([0, 1, 2, 5, 11, 100, 1000])
    cos, sin = POSITIONS["rope"](c).rotary(pos[None], torch.float64)
    ours = apply_rope(x.transpose(1, 2), cos, sin).transpose(1, 2)  # apply_rope works on (B, T, H, D)
    # Angles are computed in float32 as in HF (p * inv_freq at p = 1000 carries ~6e-5 rad of rounding).
    torch.testing.assert_close(ours, rope_complex(x, pos, theta), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours[..., :5, :], rope_complex(x, pos, theta)[..., :5, :], atol=1e-6, rtol=1e-6)


def test_rope_gradient_matches_hf_rotate_half_form():
    """apply_rope's in-place addcmul leaves autograd correct: the gradient of HF Llama's
    x * cos + rotate_half(x) * sin (written out here) through the same tables."""
    c = cfg()
    cos, signed_sin = POSITIONS["rope"](c).rotary(torch.arange(7)[None], torch.float64)
    sin = signed_sin[..., c.head_dim // 2:].repeat(1, 1, 1, 2)  # (sin, sin) as HF's table
    x = torch.randn(2, 7, c.n_heads, c.head_dim, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 7, c.n_heads, c.head_dim, dtype=torch.float64)
    ours = torch.autograd.grad((apply_rope(x, cos, signed_sin) * w).sum(), x)[0]
    half = c.head_dim // 2
    rotate_half = lambda t: torch.cat((-t[..., half:], t[..., :half]), dim=-1)  # noqa: E731
    want = torch.autograd.grad(((x * cos + rotate_half(x) * sin) * w).sum(), x)[0]
    torch.testing.assert_close(ours, want, atol=1e-12, rtol=1e-12)
    assert torch.autograd.gradcheck(lambda t: apply_rope(t, cos, signed_sin), (x,))


def test_rope_scores_depend_only_on_relative_position():
    c = cfg()
    rope = POSITIONS["rope"](c)
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 1, 1, 1, c.head_dim, generator=g)
    def score(pq, pk):
        cq, sq = rope.rotary(torch.tensor([[pq]]), torch.float32)
        ck, sk = rope.rotary(torch.tensor([[pk]]), torch.float32)
        return (apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum()
    torch.testing.assert_close(score(5, 2), score(13, 10))


def test_sinusoidal_values():
    c = cfg()
    x = torch.zeros(1, 3, 32)
    pe = POSITIONS["sinusoidal"](c).add(x, torch.tensor([[0, 1, 7]]))
    i = 3  # dims 6 (sin) and 7 (cos) use frequency 10000^(-6/32)
    w = 10000 ** (-2 * i / 32)
    torch.testing.assert_close(pe[0, 2, 2 * i], torch.tensor(math.sin(7 * w)))
    torch.testing.assert_close(pe[0, 2, 2 * i + 1], torch.tensor(math.cos(7 * w)))
    assert torch.equal(pe[0, 0, 0::2], torch.zeros(16)) and torch.equal(pe[0, 0, 1::2], torch.ones(16))


def test_learned_positions_and_limit():
    c = cfg(position="learned")
    pos = POSITIONS["learned"](c)
    torch.nn.init.normal_(pos.weight)
    torch.testing.assert_close(pos.add(torch.zeros(1, 2, 32), torch.tensor([[3, 4]]))[0], pos.weight[3:5])
    check_positions(c, 15)
    with pytest.raises(ConfigError, match="position 16 is past it"):
        check_positions(c, 16)
    check_positions(cfg(), 10_000)  # rope has no table


def test_positions_from_segments():
    seg = torch.tensor([[0, 0, 0, 1, 1, 2], [5, 5, 5, 5, 5, 5], [0, 1, 1, 0, 0, 0]])
    expected = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5], [0, 0, 1, 0, 1, 2]])
    assert torch.equal(positions_from_segments(seg), expected)


def test_rope_angles_stay_float32_in_a_bf16_model():
    rope = POSITIONS["rope"](cfg()).to(torch.bfloat16)
    cos, sin = rope.rotary(torch.tensor([[1000]]), torch.float32)
    ref = POSITIONS["rope"](cfg()).rotary(torch.tensor([[1000]]), torch.float32)
    assert torch.equal(cos, ref[0]) and torch.equal(sin, ref[1])
    assert list(rope.state_dict()) == []
