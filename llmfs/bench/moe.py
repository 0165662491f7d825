"""`llmfs bench moe`: llmfs's MoE layer against the dense MLP with the same active parameters.

Each token of a top-k MoE layer with experts of width F passes through k SwiGLU MLPs of width F, so the dense
baseline is one SwiGLU MLP of width k * F: the same matmul parameters and FLOPs per token (plus the MoE's
D x E router). The MoE layer holds E / k times as many parameters; what the table shows is what routing,
sorting, gathering and the per-expert loop (`llmfs.model.moe`) cost on top of the same arithmetic, and the
memory the extra experts take. Variants: top-2 of 8 experts without a capacity limit, and with capacity
factor 1.25 (tokens over an expert's capacity are dropped, which saves work when routing is unbalanced).
Forward and forward + backward on a random (B, T, D) input, timed as in timing.py.
"""

from __future__ import annotations

import dataclasses

import torch

from llmfs.bench import report as rep
from llmfs.bench.timing import environment, forward_backward_fields
from llmfs.config import from_dict
from llmfs.model.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class MoESetup:
    d_model: int
    d_expert: int
    n_experts: int
    top_k: int
    batch: int
    seq_len: int
    warmup: int
    repeats: int


SETUPS = {  # (device type, quick)
    ("cpu", True): MoESetup(64, 128, 8, 2, 2, 64, 1, 3),
    ("cpu", False): MoESetup(256, 512, 8, 2, 8, 256, 2, 5),
    ("cuda", True): MoESetup(512, 1024, 8, 2, 8, 256, 2, 5),
    ("cuda", False): MoESetup(1024, 2816, 8, 2, 8, 1024, 3, 10),
}
VARIANTS = {"dense": None, "moe": None, "moe cf=1.25": 1.25}  # name -> capacity factor
KEYS = ("variant",)
COLUMNS = (
    rep.Column("variant", "variant"), rep.Column("params", "params", ",d"),
    rep.Column("active_params", "active params/token", ",d"),
    rep.spread_column("fwd", "fwd ms"), rep.spread_column("fwdbwd", "fwd+bwd ms"),
    rep.Column("fwd_tok_s", "fwd tok/s", ",.0f"), rep.Column("fwdbwd_tok_s", "fwd+bwd tok/s", ",.0f"),
    rep.Column("vs_dense", "fwd+bwd time vs dense", lambda r: f"{r['vs_dense']:.2f}x"),
    rep.Column("weights_mib", "weights MiB", ".1f"), rep.Column("saved_mib", "saved act. MiB", ".1f"),
    rep.Column("peak_mib", "peak MiB", ".0f"),
)
METRICS = ("fwd_tok_s", "fwdbwd_tok_s", "saved_mib", "peak_mib")


def build(setup: MoESetup, variant: str, device: torch.device, dtype: torch.dtype):
    """(module, forward(x) -> y, active matmul params per token) for one variant."""
    from llmfs.model.mlp import MLPS
    from llmfs.model.moe import MoE

    torch.manual_seed(0)
    D, F, E, k = setup.d_model, setup.d_expert, setup.n_experts, setup.top_k
    if variant == "dense":
        mlp = MLPS["swiglu"](D, k * F, False).to(device=device, dtype=dtype)
        return mlp, mlp, 3 * D * k * F
    cfg = from_dict(ModelConfig, dict(vocab_size=1, max_seq_len=setup.seq_len, d_model=D, n_layers=1, n_heads=1,
                                      d_ff=F, n_experts=E, top_k=k, capacity_factor=VARIANTS[variant]))
    moe = MoE(cfg).to(device=device, dtype=dtype)
    return moe, (lambda x: moe(x)[0]), 3 * D * k * F + D * E


def run(device: torch.device, *, quick: bool = False, progress=None) -> dict:
    setup = SETUPS[(device.type, quick)]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    env = environment(device, str(dtype).removeprefix("torch."))
    x = torch.randn(setup.batch, setup.seq_len, setup.d_model, generator=torch.Generator().manual_seed(0))
    x = x.to(device=device, dtype=dtype)
    tokens = setup.batch * setup.seq_len
    rows = []
    for variant in VARIANTS:
        module, forward, active = build(setup, variant, device, dtype)
        fields = forward_backward_fields(forward, x, module.parameters(), warmup=setup.warmup,
                                         repeats=setup.repeats)
        row = {"variant": variant, "params": sum(p.numel() for p in module.parameters()), "active_params": active,
               "tokens": tokens, **fields, "fwd_tok_s": tokens / fields["fwd_ms"] * 1e3,
               "fwdbwd_tok_s": tokens / fields["fwdbwd_ms"] * 1e3,
               "weights_mib": sum(p.numel() * p.element_size() for p in module.parameters()) / 2**20}
        row["vs_dense"] = row["fwdbwd_ms"] / (rows[0]["fwdbwd_ms"] if rows else row["fwdbwd_ms"])
        rows.append(row)
        if progress is not None:
            progress(row)
    notes = [f"d_model {setup.d_model}; MoE: {setup.n_experts} SwiGLU experts of width {setup.d_expert}, top-"
             f"{setup.top_k}; dense: one SwiGLU MLP of width {setup.top_k * setup.d_expert}; {tokens} tokens "
             f"per call (batch {setup.batch} x {setup.seq_len}); {setup.warmup} warm-up + {setup.repeats} timed "
             "calls each, median and min-max shown"]
    return rep.make("moe", env, KEYS, rows, notes)
