"""How generation stores the linear layers' weights on CPU: each (out, in) matrix as the transpose of a contiguous
(in, out) one. Same values, same shape, same autograd-free forward; only the strides change.

Why: a decode step multiplies a handful of rows (one per sequence) by every weight matrix, so once the weights
no longer fit the caches it is bound by how fast they stream from memory. `F.linear(x, W)` computes x @ W^T;
with W stored row-major (nn.Linear's layout, and the checkpoint's) the CPU GEMM reads W^T as a transposed operand,
a dot product along each row of `in` floats. Stored as the transpose of a contiguous (in, out) matrix, W^T is a
plain row-major operand and the kernel streams rows of `out` floats, which runs closer to the memory bandwidth
for large matrices, tall ones most (the MLP's up projection, the lm_head). For matrices that stay in the caches
it is the other way round, so only matrices of `MIN_BYTES` and more are re-stored.

Measured on a 2-core Xeon with torch 2.13 (2026-12-05, docs/bench/generate.md), same process, interleaved:
- matrix-vector products, memory-bound (more copies than the caches hold): 3072 x 768 27 -> 32 GB/s, the
  50257 x 768 GPT-2 lm_head 28 -> 35 GB/s, 768 x 3072 and 768 x 768 about even;
- the same products on the small model's shapes (256 x 256 to 4096 x 256, all cache-resident): 8-15% slower;
- GPT-2-size decode step (12 x 768, vocab 50257): batch 1 24.3 -> 23.4 ms, batch 8 58.3 -> 44.7 ms with the
  MLP and lm_head re-stored (every matrix: 23.0 and 44.7 ms); the small model untouched (d_model 256: no matrix
  reaches MIN_BYTES).

Only for inference on CPU: training keeps nn.Linear's layout (gradients and optimizer states follow the
parameter's strides), and CUDA's GEMMs were not measured this way. A tied lm_head is the embedding table's
Parameter, so the embedding reads the same storage (a token's row becomes a strided gather: microseconds per
prompt). Safetensors cannot save the re-strided tensors; nothing that generates saves the model.
"""

from __future__ import annotations

import torch
from torch import nn

MIN_BYTES = 8 << 20  # GPT-2 small's MLP (9.4 MB) and lm_head (154 MB); not its 768 x 768 attention (2.4 MB)


@torch.no_grad()
def decode_layout(model: nn.Module, min_bytes: int = MIN_BYTES) -> nn.Module:
    """Re-store every nn.Linear weight of `min_bytes` or more on CPU as the transpose of a contiguous (in, out)
    matrix, in place; returns the model. Weights on other devices, and smaller ones, are left as they are."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.weight.device.type == "cpu":
            w = module.weight
            if w.numel() * w.element_size() >= min_bytes and not w.t().is_contiguous():
                w.data = w.data.t().contiguous().t()  # (out, in) view of an (in, out) buffer
    return model
