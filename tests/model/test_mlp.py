import math

import pytest
import torch

from llmfs.model.mlp import MLPS


def _gelu_erf(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def _gelu_tanh(x):  # GPT-2's gelu_new
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


FORMULAS = {
    "gelu": lambda m, x: _gelu_erf(x @ m.up_proj.weight.T + m.up_proj.bias) @ m.down_proj.weight.T + m.down_proj.bias,
    "gelu_tanh": lambda m, x: (_gelu_tanh(x @ m.up_proj.weight.T + m.up_proj.bias) @ m.down_proj.weight.T
                               + m.down_proj.bias),
    "relu2": lambda m, x: (torch.clamp(x @ m.up_proj.weight.T + m.up_proj.bias, min=0) ** 2 @ m.down_proj.weight.T
                           + m.down_proj.bias),
    "swiglu": lambda m, x: ((torch.sigmoid(g := x @ m.gate_proj.weight.T + m.gate_proj.bias) * g
                             * (x @ m.up_proj.weight.T + m.up_proj.bias)) @ m.down_proj.weight.T + m.down_proj.bias),
}


@pytest.mark.parametrize("kind", sorted(MLPS))
def test_mlp_matches_formula(kind):
    assert set(FORMULAS) == set(MLPS)
    torch.manual_seed(0)
    m = MLPS[kind](8, 20, True)
    x = torch.randn(3, 4, 8)
    torch.testing.assert_close(m(x), FORMULAS[kind](m, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", sorted(MLPS))
def test_mlp_parameter_names(kind):
    names = set(MLPS[kind](8, 20, False).state_dict())
    expected = {"up_proj.weight", "down_proj.weight"} | ({"gate_proj.weight"} if kind == "swiglu" else set())
    assert names == expected
