"""How generation multiplies a decode step's few rows by the linear layers' weights on CPU: as one batched
product over row blocks of the weight matrix, `torch.bmm(W.view(blocks, out / blocks, in), x^T)`, instead of
`F.linear(x, W)`'s single product. The same Parameters (the tie of a tied lm_head included), the same
state_dict, the same values up to float rounding; only the kernel changes. More than `MAX_ROWS` rows (a prompt's
prefill, an uncached forward, unless they are that short), and any call with gradients enabled (generation runs
under `torch.inference_mode`), go through `F.linear`, exactly as in training.

Why: a decode step at batch 1 is a matrix-vector product per weight matrix, bound by how fast the weights stream
from memory. On torch 2.13's CPU build, `F.linear` with one row runs these products at 11-16 GB/s on a 2-core
AMD EPYC VM (GPT-2's 768 x 768 to 50257 x 768 matrices, more copies than the caches hold), with one core's worth
of memory traffic whatever the thread count; the batched product over `blocks` row blocks runs the same bytes at
25-39 GB/s (2 threads; 25 GB/s with one). Measured 2026-12-06, same process, interleaved (docs/bench/generate.md):
GPT-2-size decode step at batch 1 40 -> 17 ms, at batch 8 75 -> 65 ms; the small model's (4 x 256) 3.3 -> 1.9 ms.
The batched product needs x^T's column-major strides as `x.t().expand(...)` gives them; `x.view(1, in, 1)` (the
same numbers, other strides) took a path three times slower than `F.linear`.

The matrix is split into `blocks` equal row blocks (default: the torch thread count, at least 2); a remainder of
rows (GPT-2's vocabulary, 50257, is odd) goes through `F.linear` and is concatenated. Only weights on CPU are
changed: CUDA's GEMMs were not measured this way. Nothing that generates saves or trains the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MAX_ROWS = 16  # decode steps of up to 16 sequences; a longer prefill (batch x prompt length rows) takes F.linear


def transposed_rows(rows: torch.Tensor, blocks: int) -> torch.Tensor:
    """rows (N, in) -> (blocks, in, N), x^T repeated over the blocks without a copy, with the strides the fast
    batched product needs: (0, 1, in). `rows.t().expand(...)` gives them for a row-major (N, in) tensor, except
    that a dimension of size 1 may carry any stride: a (1, in) tensor with strides (1, 1) (what inductor made of
    GPT-2's GELU output) passed as (0, 1, 1) and ran the down-projection at a quarter of the speed."""
    n, d_in = rows.shape
    if rows.is_contiguous():
        return rows.as_strided((blocks, d_in, n), (0, 1, d_in))
    return rows.t().expand(blocks, d_in, n)


def row_block_product(w: torch.Tensor, rows: torch.Tensor, blocks: int) -> torch.Tensor:
    """rows (N, in) @ w^T for a row-major w (out, in), as one bmm over `blocks` row blocks of w -> (N, out)."""
    d_out, d_in = w.shape
    n = rows.shape[0]
    main = d_out - d_out % blocks
    y = torch.bmm(w[:main].view(blocks, main // blocks, d_in), transposed_rows(rows, blocks))  # (k, main/k, N)
    y = y.view(main, n).t()  # (N, main); contiguous when N = 1
    if main < d_out:
        return torch.cat([y, F.linear(rows, w[main:])], dim=1)  # (N, out)
    return y.contiguous() if n > 1 else y


class RowBlockLinear(nn.Module):
    """An nn.Linear's weight and bias (the same Parameters) with a decode-time forward (module docstring).

    The row blocks of W (and of the bias, for `baddbmm`, which adds it inside the product) are views made once
    here, not per call: a decode step at GPT-2 size calls 73 of these, and a call's fixed cost (views, a separate
    bias add, the module call) was 21 us against 11 us for the product alone (measured 2026-12-06). Views share
    the Parameters' storage, so an in-place update of the weights is seen; when a weight is replaced (`.to()`,
    `load_state_dict(assign=True)`, `.data = ...`) the views are made again on the next call."""

    def __init__(self, linear: nn.Linear, blocks: int):
        super().__init__()
        self.weight = linear.weight  # (out, in), row-major: each block is a contiguous (out / blocks, in) view
        self.bias = linear.bias
        self.blocks = blocks
        self.main = self.weight.shape[0] - self.weight.shape[0] % blocks  # rows in whole blocks; the rest: F.linear
        self._views()

    def _views(self) -> None:
        d_in = self.weight.shape[1]
        self._w_blocks = self.weight.detach()[: self.main].view(self.blocks, self.main // self.blocks, d_in)
        self._b_blocks = (None if self.bias is None else  # (k, out/k, in) and (k, out/k, 1)
                          self.bias.detach()[: self.main].view(self.blocks, self.main // self.blocks, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])  # (N, in)
        n = rows.shape[0]
        if n > MAX_ROWS or torch.is_grad_enabled():  # a prefill, or anything that needs a gradient: F.linear
            return F.linear(x, self.weight, self.bias)
        if self._w_blocks.data_ptr() != self.weight.data_ptr() or (  # a Parameter was replaced (.to, assign=True)
                self.bias is not None and self._b_blocks.data_ptr() != self.bias.data_ptr()):
            self._views()
        x_t = transposed_rows(rows, self.blocks)  # (k, in, N), x^T's strides (module docstring)
        if self._b_blocks is None:
            y = torch.bmm(self._w_blocks, x_t)  # (k, out/k, N)
        else:
            y = torch.baddbmm(self._b_blocks, self._w_blocks, x_t)  # (k, out/k, N), bias added in the product
        y = y.view(self.main, n).t()  # (N, main)
        if self.main < self.weight.shape[0]:
            rest = F.linear(rows, self.weight[self.main:], None if self.bias is None else self.bias[self.main:])
            y = torch.cat([y, rest], dim=1)  # (N, out)
        elif n > 1:
            y = y.contiguous()
        return y.view(*x.shape[:-1], y.shape[-1])

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}, blocks={self.blocks}"


def use_decode_linears(model: nn.Module, blocks: int | None = None) -> nn.Module:
    """Replace every nn.Linear on CPU whose contiguous weight has at least `blocks` rows by a RowBlockLinear
    holding the same Parameters, in place; returns the model. Others (other devices, a 1-row reward head) stay."""
    k = blocks or max(2, torch.get_num_threads())
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if (type(child) is nn.Linear and child.weight.device.type == "cpu" and child.weight.is_contiguous()
                    and child.weight.shape[0] >= k):
                setattr(parent, name, RowBlockLinear(child, k))
    return model
