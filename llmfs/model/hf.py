"""Conversion to and from Hugging Face `transformers` checkpoints: pure functions on config dicts and state
dicts (no file I/O). Two targets:

- Llama (`LlamaForCausalLM`): rope + rmsnorm + swiglu, MHA/GQA/MQA, tied or untied, optional biases
  (HF `attention_bias` / `mlp_bias`). Our names are HF's minus the `model.` prefix, and our RoPE uses HF's
  rotate-half layout, so q/k need no permutation (the parity test checks logits).
- GPT-2 (`GPT2LMHeadModel`): learned positions + layernorm + gelu (exact) or gelu_tanh (GPT-2's own
  `gelu_new`) + biases + MHA + tied head. GPT-2 stores linears as `Conv1D` with (in, out) weights, i.e.
  transposed, and fuses q/k/v into one `c_attn` of width 3 * d_model.
Anything the target cannot express (a window, MoE, another norm ...) raises ConfigError naming the option.
`dropout` is a training setting: Llama has no residual dropout, so exporting to Llama leaves it out; GPT-2
carries it in resid/embd/attn_pdrop. `attn_impl` and `init_std` (-> initializer_range) do not change weights.
"""

from __future__ import annotations

import dataclasses

import torch

from llmfs.config import from_dict
from llmfs.errors import ConfigError
from llmfs.model.config import ModelConfig, default_d_ff

Tensors = dict[str, torch.Tensor]
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ModelConfig)}


def _require(cfg: ModelConfig, arch: str, **wanted) -> None:
    for key, allowed in wanted.items():
        value = getattr(cfg, key)
        if value not in allowed:
            raise ConfigError(f"model.{key} = {value!r} cannot be exported to HF {arch} "
                              f"(it supports {' / '.join(repr(a) for a in allowed)})")


def to_hf(cfg: ModelConfig, state_dict: Tensors, arch: str | None = None) -> tuple[dict, Tensors]:
    """(ModelConfig, our state dict) -> (HF config dict, HF state dict). arch: "llama" | "gpt2"; by default
    gpt2 for learned positions, else llama."""
    arch = arch or ("gpt2" if cfg.position == "learned" else "llama")
    if arch == "llama":
        return _llama_config(cfg), _llama_weights(cfg, state_dict)
    if arch == "gpt2":
        return _gpt2_config(cfg), _gpt2_weights(cfg, state_dict)
    raise ConfigError(f"unknown HF architecture {arch!r}; expected 'llama' or 'gpt2'")


def from_hf(hf_config: dict, state_dict: Tensors) -> tuple[ModelConfig, Tensors]:
    """(HF config dict, HF state dict) -> (ModelConfig, our state dict); model_type "llama" or "gpt2"."""
    kind = hf_config.get("model_type")
    if kind == "llama":
        cfg = _llama_from_config(hf_config)
        return cfg, _llama_from_weights(cfg, state_dict)
    if kind == "gpt2":
        cfg = _gpt2_from_config(hf_config)
        return cfg, _gpt2_from_weights(cfg, state_dict)
    raise ConfigError(f"HF model_type {kind!r} is not supported; llmfs converts 'llama' and 'gpt2'")


def _model_config(d: dict, arch: str) -> ModelConfig:
    """Build a ModelConfig, leaving out values equal to their defaults (so configs round-trip equal)."""
    d = {k: v for k, v in d.items() if k not in _DEFAULTS or _DEFAULTS[k] is dataclasses.MISSING
         or v != _DEFAULTS[k]}
    return from_dict(ModelConfig, d, source=f"HF {arch} config")


def _expect(hf: dict, arch: str, key: str, allowed: tuple, default=None) -> None:
    value = hf.get(key, default)
    if value not in allowed:
        raise ConfigError(f"HF {arch} config {key} = {value!r} is not supported by llmfs "
                          f"(supported: {' / '.join(repr(a) for a in allowed)})")


def _check_keys(ours: Tensors, cfg: ModelConfig, arch: str) -> Tensors:
    from llmfs.model.transformer import Transformer
    with torch.device("meta"):
        expected = set(Transformer(cfg).state_dict())
    missing, extra = expected - set(ours), set(ours) - expected
    if missing or extra:
        raise ConfigError(f"HF {arch} state dict does not match its config: missing {sorted(missing)[:5]}, "
                          f"unexpected {sorted(extra)[:5]}")
    return ours


# ---------------------------------------------------------------------------------------------- Llama
def _llama_config(cfg: ModelConfig) -> dict:
    _require(cfg, "Llama", position=("rope",), norm=("rmsnorm",), mlp=("swiglu",), window=(None,),
             n_experts=(0,))
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model, "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.kv_heads, "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,  # transformers < 5 reads this key, >= 5 reads rope_parameters
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "hidden_act": "silu", "attention_bias": cfg.bias, "mlp_bias": cfg.bias,
        "tie_word_embeddings": cfg.tie_embeddings, "initializer_range": cfg.init_std, "attention_dropout": 0.0,
    }


def _llama_weights(cfg: ModelConfig, sd: Tensors) -> Tensors:
    out = {}
    for k, v in sd.items():
        if k == "lm_head.weight":
            if not cfg.tie_embeddings:
                out[k] = v
        else:
            out["model." + k] = v
    return out


def _llama_from_config(hf: dict) -> ModelConfig:
    for key in ("rope_scaling", "rope_parameters"):  # the older and the newer (transformers >= 5) name
        scaling = dict(hf.get(key) or {})
        if "rope_type" not in scaling and "type" in scaling:  # before transformers 4.37: {"type": "linear"}
            scaling["rope_type"] = scaling["type"]
        _expect(scaling, "Llama", "rope_type", ("default",), default="default")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    _expect(hf, "Llama", "hidden_act", ("silu",), default="silu")
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or d // heads
    if head_dim * heads != d:
        raise ConfigError(f"HF Llama head_dim = {head_dim} with {heads} heads != hidden_size {d}; llmfs needs "
                          "head_dim = hidden_size / num_attention_heads")
    bias = bool(hf.get("attention_bias", False))
    if bool(hf.get("mlp_bias", False)) != bias:
        raise ConfigError("HF Llama attention_bias != mlp_bias; llmfs has a single model.bias for both")
    kv = hf.get("num_key_value_heads") or heads
    d_ff = hf["intermediate_size"]
    return _model_config({
        "vocab_size": hf["vocab_size"], "max_seq_len": hf["max_position_embeddings"], "d_model": d,
        "n_layers": hf["num_hidden_layers"], "n_heads": heads, "n_kv_heads": None if kv == heads else kv,
        "d_ff": None if d_ff == default_d_ff(d, "swiglu") else d_ff, "position": "rope",
        "rope_theta": float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))), "norm": "rmsnorm",
        "norm_eps": float(hf.get("rms_norm_eps", 1e-6)), "mlp": "swiglu", "bias": bias,
        "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
        "init_std": float(hf.get("initializer_range", 0.02)),
    }, "Llama")


def _llama_from_weights(cfg: ModelConfig, sd: Tensors) -> Tensors:
    out = {}
    for k, v in sd.items():
        if k.endswith("rotary_emb.inv_freq"):  # a buffer some old checkpoints saved
            continue
        if k == "lm_head.weight":
            if not cfg.tie_embeddings:
                out[k] = v
        elif k.startswith("model."):
            out[k[len("model."):]] = v
        else:
            out[k] = v
    if cfg.tie_embeddings:
        out["lm_head.weight"] = out["embed_tokens.weight"]
    return _check_keys(out, cfg, "Llama")


# ---------------------------------------------------------------------------------------------- GPT-2
_GPT2_ACT = {"gelu": "gelu", "gelu_tanh": "gelu_new"}
_GPT2_ACT_IN = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}


def _gpt2_config(cfg: ModelConfig) -> dict:
    _require(cfg, "GPT-2", position=("learned",), norm=("layernorm",), mlp=tuple(_GPT2_ACT), bias=(True,),
             n_kv_heads=(None, cfg.n_heads), tie_embeddings=(True,), window=(None,), n_experts=(0,))
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": cfg.vocab_size, "n_positions": cfg.max_seq_len, "n_embd": cfg.d_model,
        "n_layer": cfg.n_layers, "n_head": cfg.n_heads, "n_inner": cfg.ffn_dim,
        "activation_function": _GPT2_ACT[cfg.mlp], "layer_norm_epsilon": cfg.norm_eps,
        "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
        "initializer_range": cfg.init_std, "tie_word_embeddings": True,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
    }


def _gpt2_weights(cfg: ModelConfig, sd: Tensors) -> Tensors:
    out = {"transformer.wte.weight": sd["embed_tokens.weight"], "transformer.wpe.weight": sd["embed_positions.weight"],
           "transformer.ln_f.weight": sd["norm.weight"], "transformer.ln_f.bias": sd["norm.bias"]}
    for i in range(cfg.n_layers):
        a, h = f"layers.{i}.", f"transformer.h.{i}."
        for ours, theirs in (("input_layernorm", "ln_1"), ("post_attention_layernorm", "ln_2")):
            out[h + theirs + ".weight"] = sd[a + ours + ".weight"]
            out[h + theirs + ".bias"] = sd[a + ours + ".bias"]
        qkv = [sd[a + f"self_attn.{n}_proj.weight"] for n in "qkv"]  # each (D, D) as (out, in)
        out[h + "attn.c_attn.weight"] = torch.cat(qkv, 0).t().contiguous()  # Conv1D: (in, 3D)
        out[h + "attn.c_attn.bias"] = torch.cat([sd[a + f"self_attn.{n}_proj.bias"] for n in "qkv"])
        for ours, theirs in (("self_attn.o_proj", "attn.c_proj"), ("mlp.up_proj", "mlp.c_fc"),
                             ("mlp.down_proj", "mlp.c_proj")):
            out[h + theirs + ".weight"] = sd[a + ours + ".weight"].t().contiguous()
            out[h + theirs + ".bias"] = sd[a + ours + ".bias"]
    return out


def _gpt2_from_config(hf: dict) -> ModelConfig:
    act = hf.get("activation_function", "gelu_new")
    if act not in _GPT2_ACT_IN:
        raise ConfigError(f"HF GPT-2 activation_function = {act!r} is not supported "
                          f"(supported: {', '.join(_GPT2_ACT_IN)})")
    _expect(hf, "GPT-2", "scale_attn_weights", (True,), default=True)
    _expect(hf, "GPT-2", "scale_attn_by_inverse_layer_idx", (False,), default=False)
    _expect(hf, "GPT-2", "add_cross_attention", (False,), default=False)
    drops = {hf.get(k, 0.1) for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
    if len(drops) != 1:
        raise ConfigError(f"HF GPT-2 resid_pdrop / embd_pdrop / attn_pdrop differ ({sorted(drops)}); llmfs has a "
                          "single model.dropout")
    d, mlp = hf["n_embd"], _GPT2_ACT_IN[act]
    d_ff = hf.get("n_inner") or 4 * d
    return _model_config({
        "vocab_size": hf["vocab_size"], "max_seq_len": hf["n_positions"], "d_model": d,
        "n_layers": hf["n_layer"], "n_heads": hf["n_head"], "d_ff": None if d_ff == default_d_ff(d, mlp) else d_ff,
        "position": "learned", "norm": "layernorm", "norm_eps": float(hf.get("layer_norm_epsilon", 1e-5)),
        "mlp": mlp, "bias": True, "tie_embeddings": True, "dropout": float(drops.pop()),
        "init_std": float(hf.get("initializer_range", 0.02)),
    }, "GPT-2")


def _gpt2_from_weights(cfg: ModelConfig, sd: Tensors) -> Tensors:
    # Hub checkpoints store the bare `GPT2Model` keys (h.0...), GPT2LMHeadModel.state_dict() prefixes them.
    sd = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in sd.items()}
    d = cfg.d_model
    out = {"embed_tokens.weight": sd["wte.weight"], "embed_positions.weight": sd["wpe.weight"],
           "norm.weight": sd["ln_f.weight"], "norm.bias": sd["ln_f.bias"]}
    for i in range(cfg.n_layers):
        a, h = f"layers.{i}.", f"h.{i}."
        for ours, theirs in (("input_layernorm", "ln_1"), ("post_attention_layernorm", "ln_2")):
            out[a + ours + ".weight"] = sd[h + theirs + ".weight"]
            out[a + ours + ".bias"] = sd[h + theirs + ".bias"]
        w, b = sd[h + "attn.c_attn.weight"].t(), sd[h + "attn.c_attn.bias"]  # (3D, D), (3D,)
        for j, n in enumerate("qkv"):
            out[a + f"self_attn.{n}_proj.weight"] = w[j * d:(j + 1) * d].contiguous()
            out[a + f"self_attn.{n}_proj.bias"] = b[j * d:(j + 1) * d].contiguous()
        for ours, theirs in (("self_attn.o_proj", "attn.c_proj"), ("mlp.up_proj", "mlp.c_fc"),
                             ("mlp.down_proj", "mlp.c_proj")):
            out[a + ours + ".weight"] = sd[h + theirs + ".weight"].t().contiguous()
            out[a + ours + ".bias"] = sd[h + theirs + ".bias"]
    out["lm_head.weight"] = out["embed_tokens.weight"]
    # Every input key must be used: 4 + 12 per layer, plus the tied lm_head and GPT-2's causal-mask buffers.
    ignorable = {k for k in sd if k == "lm_head.weight" or k.endswith(("attn.bias", "attn.masked_bias"))
                 and not k.endswith("c_attn.bias")}
    if len(sd) - len(ignorable) != 4 + 12 * cfg.n_layers:
        raise ConfigError(f"HF GPT-2 state dict has {len(sd) - len(ignorable)} weight tensors, expected "
                          f"{4 + 12 * cfg.n_layers} for n_layer = {cfg.n_layers}")
    return _check_keys(out, cfg, "GPT-2")
