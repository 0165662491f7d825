"""`llmfs bench attention`: the `manual` and `sdpa` kernels, full causal and sliding window, over sequence
lengths: forward and forward + backward time, tokens/s and memory.

What is timed is llmfs's `Attention` layer (q/k/v/o projections + kernel, `llmfs.model.attention`) on a random
(B, T, D) input, with the mask built the way `Transformer.forward` builds it: None for plain causal attention
(sdpa then takes `is_causal=True`, the path to the flash kernels), `attention_mask(window=W)` otherwise. The
manual kernel materialises the (B, H, T, T) score matrix, so its time and saved activations grow as T^2;
sdpa's memory-efficient / flash kernels keep O(T) per head when they apply.
Forward runs under no_grad; forward + backward propagates a fixed random output gradient (timing.py).
"""

from __future__ import annotations

import dataclasses

import torch

from llmfs.bench import report as rep
from llmfs.bench.timing import environment, forward_backward_fields
from llmfs.config import from_dict
from llmfs.model.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class AttentionSetup:
    d_model: int
    n_heads: int
    batch: int
    seq_lens: tuple[int, ...]
    window: int
    warmup: int
    repeats: int


SETUPS = {  # (device type, quick)
    ("cpu", True): AttentionSetup(64, 4, 2, (64, 128), 32, 1, 3),
    ("cpu", False): AttentionSetup(256, 4, 4, (128, 256, 512, 1024), 128, 2, 5),
    ("cuda", True): AttentionSetup(512, 8, 4, (256, 512), 128, 2, 5),
    ("cuda", False): AttentionSetup(1024, 16, 8, (512, 1024, 2048, 4096), 256, 3, 10),
}
KEYS = ("impl", "window", "seq_len")
COLUMNS = (
    rep.Column("impl", "impl"), rep.Column("window", "window"), rep.Column("seq_len", "seq len", "d"),
    rep.spread_column("fwd", "fwd ms"), rep.spread_column("fwdbwd", "fwd+bwd ms"),
    rep.Column("fwd_tok_s", "fwd tok/s", ",.0f"), rep.Column("fwdbwd_tok_s", "fwd+bwd tok/s", ",.0f"),
    rep.Column("saved_mib", "saved act. MiB", ".2f"), rep.Column("peak_mib", "peak MiB", ".0f"),
)
METRICS = ("fwd_tok_s", "fwdbwd_tok_s", "saved_mib", "peak_mib")


def layer(setup: AttentionSetup, impl: str, window: int | None, seq_len: int, device: torch.device,
          dtype: torch.dtype):
    """An llmfs Attention layer and `forward(x)` that builds the mask as the Transformer does."""
    from llmfs.model.attention import Attention, attention_mask

    cfg = from_dict(ModelConfig, dict(vocab_size=1, max_seq_len=seq_len, d_model=setup.d_model,
                                      n_heads=setup.n_heads, n_layers=1, attn_impl=impl, window=window))
    torch.manual_seed(0)
    attn = Attention(cfg, layer_idx=0).to(device=device, dtype=dtype)

    def forward(x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        mask = None
        if window is not None:
            pos = torch.arange(x.shape[1], device=x.device)[None]  # (1, T)
            mask = attention_mask(pos, pos, window=window, n_sinks=0)  # (1, 1, T, T)
        return attn(x, None, mask)

    return attn, forward


def run(device: torch.device, *, quick: bool = False, progress=None) -> dict:
    setup = SETUPS[(device.type, quick)]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    env = environment(device, str(dtype).removeprefix("torch."))
    rows = []
    for seq_len in setup.seq_lens:
        x = torch.randn(setup.batch, seq_len, setup.d_model, generator=torch.Generator().manual_seed(seq_len))
        x = x.to(device=device, dtype=dtype)
        for impl in ("manual", "sdpa"):
            for window in (None, min(setup.window, seq_len)):
                attn, forward = layer(setup, impl, window, seq_len, device, dtype)
                fields = forward_backward_fields(forward, x, attn.parameters(), warmup=setup.warmup,
                                                 repeats=setup.repeats)
                tokens = setup.batch * seq_len
                row = {"impl": impl, "window": "full" if window is None else str(window), "seq_len": seq_len,
                       "batch": setup.batch, **fields, "fwd_tok_s": tokens / fields["fwd_ms"] * 1e3,
                       "fwdbwd_tok_s": tokens / fields["fwdbwd_ms"] * 1e3}
                rows.append(row)
                if progress is not None:
                    progress(row)
    notes = [f"Attention layer d_model {setup.d_model}, {setup.n_heads} heads (head dim "
             f"{setup.d_model // setup.n_heads}), batch {setup.batch}, {setup.warmup} warm-up + {setup.repeats} "
             "timed calls each, median and min-max shown"]
    return rep.make("attention", env, KEYS, rows, notes)
