import subprocess
import sys
import typing

import pytest

from llmfs.config import from_dict
from llmfs.errors import ConfigError
from llmfs.model.config import ModelConfig, default_d_ff

BASE = dict(vocab_size=64, max_seq_len=32, d_model=32, n_layers=2, n_heads=4)


def make(**kw) -> ModelConfig:
    return from_dict(ModelConfig, {**BASE, **kw})


def test_import_is_torch_free():
    code = ("import sys, llmfs.model, llmfs.model.config; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_literals_match_registries():
    from llmfs.model import ATTENTION_IMPLS, MLPS, NORMS, POSITIONS
    hints = typing.get_type_hints(ModelConfig)
    for field, registry in (("norm", NORMS), ("position", POSITIONS), ("mlp", MLPS), ("attn_impl", ATTENTION_IMPLS)):
        assert set(typing.get_args(hints[field])) == set(registry), field


def test_defaults_and_derived():
    cfg = make()
    assert (cfg.kv_heads, cfg.head_dim, cfg.ffn_dim) == (4, 8, 96)  # swiglu: int(8*32/3) = 85 -> 96
    assert make(mlp="gelu").ffn_dim == 128 and make(mlp="gelu", d_ff=100).ffn_dim == 100
    assert default_d_ff(128, "swiglu") == 352 and default_d_ff(768, "swiglu") == 2048
    assert default_d_ff(128, "relu2") == 512


def test_moe_layer_placement():
    cfg = make(n_layers=6, n_experts=4, first_dense_layers=1, moe_every=2)
    assert [cfg.is_moe_layer(i) for i in range(6)] == [False, True, False, True, False, True]
    assert not any(make().is_moe_layer(i) for i in range(2))


@pytest.mark.parametrize("kw, message", [
    (dict(d_model=30), "r.toml: d_model: must be divisible by n_heads (30 % 4 != 0)"),
    (dict(n_kv_heads=3), "n_kv_heads: n_heads (4) must be a multiple of n_kv_heads (3)"),
    (dict(d_model=36, n_heads=4, position="rope"), "rope needs an even head dim, got d_model / n_heads = 9"),
    (dict(window=64), "window: must be <= max_seq_len (32), got 64"),
    (dict(n_sinks=2), "n_sinks: attention sinks only make sense with a sliding window"),
    (dict(window=8, n_sinks=32), "n_sinks: must be < max_seq_len (32)"),
    (dict(n_experts=2, top_k=3), "top_k: must be <= n_experts (2), got 3"),
    (dict(n_experts=2, first_dense_layers=2), "first_dense_layers: must be < n_layers (2)"),
    (dict(capacity_factor=1.0), "capacity_factor: only applies to MoE models"),
    (dict(shared_expert=True), "shared_expert: only applies to MoE models"),
    (dict(top_k=1), "top_k: only applies to MoE models; set n_experts > 0 or remove it"),
    (dict(norm="batchnorm"), "'batchnorm' is not one of 'layernorm', 'rmsnorm'"),
    (dict(dropout=1.0), "dropout: must be < 1"),
    (dict(n_heads=0), "n_heads: must be > 0"),
])
def test_validation_errors(kw, message):
    with pytest.raises(ConfigError) as e:
        from_dict(ModelConfig, {**BASE, **kw}, source="r.toml")
    assert message in str(e.value)


def test_missing_key_is_named():
    with pytest.raises(ConfigError, match="vocab_size: missing required key"):
        from_dict(ModelConfig, {k: v for k, v in BASE.items() if k != "vocab_size"})


def test_round_trips_through_plain_data():
    from llmfs.config import to_dict
    for cfg in (make(), make(n_kv_heads=2, window=8, n_sinks=1, n_experts=4, top_k=1, capacity_factor=1.25)):
        assert from_dict(ModelConfig, to_dict(cfg)) == cfg
