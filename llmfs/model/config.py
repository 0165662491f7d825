"""`ModelConfig`: the `[model]` section of a recipe. Torch-free, so a recipe is checked before torch loads.

One decoder-only architecture covers the classic GPT-2 stack (`position = "learned"`, `norm = "layernorm"`,
`mlp = "gelu"`, `bias = true`) and the modern Llama stack (`"rope"`, `"rmsnorm"`, `"swiglu"`, no bias, GQA).
Every `Literal` below lists the same names as the registry dict that builds the component (`NORMS`,
`POSITIONS`, `MLPS`, `ATTENTION_IMPLS`); a test keeps them in sync.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from llmfs.config import invalid, option

Position = Literal["learned", "sinusoidal", "rope", "none"]
Norm = Literal["layernorm", "rmsnorm"]
Mlp = Literal["gelu", "gelu_tanh", "swiglu", "relu2"]
AttnImpl = Literal["sdpa", "manual"]


def default_d_ff(d_model: int, mlp: str) -> int:
    """Hidden width of the MLP when `d_ff` is not given.

    gelu / gelu_tanh / relu2: 4 * d_model (GPT-2). swiglu: 8/3 * d_model rounded up to a multiple of 32, which
    keeps the three SwiGLU matrices at the parameter count and FLOPs of the two 4*d ones (Shazeer 2020, "GLU
    Variants Improve Transformer"). Llama rounds to a multiple of 256 instead; at the tiny widths this project
    trains that makes the MLP much bigger (d_model = 128: 352 here, 384 with 64, 512 with 256). Multiples of
    32 keep GPU matmuls aligned; at d_model = 768 all three give 2048.
    """
    if mlp == "swiglu":
        return 32 * math.ceil(int(8 * d_model / 3) / 32)
    return 4 * d_model


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of the decoder-only Transformer. Field names are the keys of the recipe `[model]` table."""

    vocab_size: int = option(gt=0, doc="number of token ids (the tokenizer's vocabulary size)")
    max_seq_len: int = option(gt=0, doc="longest sequence the model is trained on (learned positions end here)")
    d_model: int = option(gt=0, doc="residual stream width")
    n_layers: int = option(gt=0, doc="number of Transformer blocks")
    n_heads: int = option(gt=0, doc="number of query heads")
    n_kv_heads: int | None = option(None, gt=0, doc="key/value heads: None = n_heads (MHA), 1 = MQA, else GQA")
    d_ff: int | None = option(None, gt=0, doc="MLP hidden width; None = default_d_ff(d_model, mlp)")
    position: Position = option("rope", doc="how positions enter the model")
    rope_theta: float = option(10000.0, gt=0, doc="RoPE base (Su et al. 2021); Llama 3 uses 500000")
    norm: Norm = option("rmsnorm", doc="normalisation layer (computed in float32)")
    norm_eps: float = option(1e-5, gt=0, doc="epsilon inside the norm")
    mlp: Mlp = option("swiglu", doc="feed-forward kind")
    attn_impl: AttnImpl = option("sdpa", doc="sdpa = F.scaled_dot_product_attention; manual = explicit softmax")
    window: int | None = option(None, gt=0, doc="sliding-window size in tokens (query included); None = full")
    n_sinks: int = option(0, ge=0, doc="first positions always visible under a window (StreamingLLM)")
    dropout: float = option(0.0, ge=0, lt=1, doc="dropout on embeddings, attention weights and residual branches")
    bias: bool = option(False, doc="biases in linear layers and LayerNorm")
    tie_embeddings: bool = option(True, doc="lm_head shares the token-embedding matrix")
    init_std: float = option(0.02, gt=0, doc="std of the normal init; residual projections get / sqrt(2 n_layers)")
    n_experts: int = option(0, ge=0, doc="experts per MoE layer; 0 = dense model")
    top_k: int = option(2, gt=0, doc="experts each token is routed to")
    moe_every: int = option(1, gt=0, doc="every moe_every-th block (after first_dense_layers) is MoE")
    first_dense_layers: int = option(0, ge=0, doc="leading blocks kept dense (DeepSeek-MoE)")
    shared_expert: bool = option(False, doc="an always-on expert added to the routed ones (DeepSeek-MoE)")
    capacity_factor: float | None = option(None, gt=0, doc="expert capacity = cf * tokens * top_k / n_experts")
    aux_loss_coef: float = option(0.01, ge=0, doc="weight of the load-balancing loss (Switch Transformer)")
    z_loss_coef: float = option(0.001, ge=0, doc="weight of the router z-loss (ST-MoE)")

    # ------------------------------------------------------------------------------------ derived values
    @property
    def kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def ffn_dim(self) -> int:
        return self.d_ff if self.d_ff is not None else default_d_ff(self.d_model, self.mlp)

    def is_moe_layer(self, i: int) -> bool:
        """Block i is MoE when experts exist, i >= first_dense_layers, and it is every moe_every-th after."""
        return (self.n_experts > 0 and i >= self.first_dense_layers
                and (i - self.first_dense_layers) % self.moe_every == 0)

    # ------------------------------------------------------------------------------------- validation
    def validate(self) -> None:
        if self.d_model % self.n_heads:
            raise invalid("d_model", f"must be divisible by n_heads ({self.d_model} % {self.n_heads} != 0)")
        if self.n_heads % self.kv_heads:
            raise invalid("n_kv_heads", f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads "
                                        f"({self.kv_heads})")
        if self.position == "rope" and self.head_dim % 2:
            raise invalid("position", f"rope needs an even head dim, got d_model / n_heads = {self.head_dim}")
        if self.position == "sinusoidal" and self.d_model % 2:
            raise invalid("position", f"sinusoidal positions need an even d_model, got {self.d_model}")
        if self.window is not None and self.window > self.max_seq_len:
            raise invalid("window", f"must be <= max_seq_len ({self.max_seq_len}), got {self.window}; "
                                    "leave it unset for full causal attention")
        if self.n_sinks and self.window is None:
            raise invalid("n_sinks", "attention sinks only make sense with a sliding window; set window too")
        if self.window is not None and self.n_sinks >= self.max_seq_len:
            raise invalid("n_sinks", f"must be < max_seq_len ({self.max_seq_len}), got {self.n_sinks}")
        if self.n_experts:
            if self.top_k > self.n_experts:
                raise invalid("top_k", f"must be <= n_experts ({self.n_experts}), got {self.top_k}")
            if self.first_dense_layers >= self.n_layers:
                raise invalid("first_dense_layers", f"must be < n_layers ({self.n_layers}) when n_experts > 0, "
                                                    f"got {self.first_dense_layers}; set n_experts = 0 for dense")
        else:
            # A dense model with an MoE field changed from its default is a recipe mistake, not a no-op.
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            for key in ("top_k", "moe_every", "first_dense_layers", "shared_expert", "capacity_factor",
                        "aux_loss_coef", "z_loss_coef"):
                if getattr(self, key) != defaults[key]:
                    raise invalid(key, "only applies to MoE models; set n_experts > 0 or remove it")
