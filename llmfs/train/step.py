"""Pieces of a training step shared by every trainer: loss, accumulation, clipping, the non-finite guard.

One optimizer step = `accum` micro-batches. Each micro-batch's loss is divided by `accum` before backward, so
the summed gradient is the gradient of the mean loss over the global batch. Under DDP, gradients are
all-reduced only on the last micro-batch (`no_sync` on the others). The global grad norm is computed after
that synchronisation (and after unscaling under fp16), then clipped. A non-finite loss or norm is caught
*before* `optimizer.step()`, so the weights never take a NaN.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean next-token cross-entropy in float32; logits (B, T, V), targets (B, T) with `ignore_index` masked."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=ignore_index)


@dataclasses.dataclass(frozen=True)
class StepResult:
    loss: float  # mean main loss over this process's micro-batches (before the MoE terms)
    aux_loss: float  # MoE load-balancing + z terms, as added to the loss
    grad_norm: float  # global norm before clipping
    finite: bool  # loss and grad norm both finite; when False the optimizer did not step
    expert_load: tuple[torch.Tensor, ...] = ()  # per MoE layer: (E,) share of assignments per expert
    z_loss: float = 0.0  # the router z-loss part of aux_loss
    dropped: int = 0  # assignments dropped by expert capacity, all MoE layers and micro-batches of this process


def micro_batches(n_rows: int, accum: int) -> list[slice]:
    size = n_rows // accum
    return [slice(i * size, (i + 1) * size) for i in range(accum)]


def counts_as_failure(result: StepResult, *, scaled: bool) -> bool:
    """Whether a step that did not update counts against `train.max_skips` (and stops the run past it).
    Without a GradScaler every non-finite step does. Under fp16's GradScaler an overflowing *gradient* with a
    finite loss is the scaler's business (it skips the step and lowers its scale: routine, not counted), but a
    non-finite *loss* is the forward itself diverging, which no loss scale can cure, so it counts as well."""
    return not result.finite and (not scaled or not math.isfinite(result.loss))


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               micro: Sequence[tuple[torch.Tensor, ...]], loss_fn: Callable[..., tuple[torch.Tensor, object]], *,
               autocast: Callable[[], contextlib.AbstractContextManager], grad_clip: float,
               scaler: torch.amp.GradScaler | None = None, no_sync: Callable[[], contextlib.AbstractContextManager]
               | None = None, reduce_mean: Callable[[torch.Tensor], torch.Tensor] | None = None) -> StepResult:
    """Forward/backward over `micro` (each a tuple of tensors for `loss_fn`), clip, and step if finite.

    `loss_fn(model, *tensors) -> (main_loss, output)` where output may carry `aux_loss`, `z_loss` and
    `expert_load` (the Transformer's MoE terms). `reduce_mean` averages a scalar over processes (identity
    for one process) so every rank takes the same decision about a non-finite step.
    """
    accum = len(micro)
    total = torch.zeros((), dtype=torch.float32, device=micro[0][0].device)
    total_aux = torch.zeros_like(total)
    total_z = torch.zeros_like(total)
    dropped = 0
    loads: list[torch.Tensor] = []
    for i, tensors in enumerate(micro):
        sync = i == accum - 1 or no_sync is None
        with (contextlib.nullcontext() if sync else no_sync()):
            with autocast():
                main, out = loss_fn(model, *tensors)
                aux = getattr(out, "aux_loss", 0.0) + getattr(out, "z_loss", 0.0)
                loss = (main + aux) / accum
            (scaler.scale(loss) if scaler is not None else loss).backward()
        total += main.detach().float() / accum
        total_aux += torch.as_tensor(aux).detach().float() / accum
        total_z += torch.as_tensor(getattr(out, "z_loss", 0.0)).detach().float() / accum
        dropped += sum(int(d) for d in getattr(out, "dropped", ()))
        loads = [x.detach() for x in getattr(out, "expert_load", ())] if not loads else [
            a + b.detach() for a, b in zip(loads, getattr(out, "expert_load", ()))]
    if scaler is not None:
        scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(
        [p for g in optimizer.param_groups for p in g["params"]], grad_clip if grad_clip > 0 else math.inf)
    if hasattr(norm, "full_tensor"):  # FSDP2 returns a DTensor
        norm = norm.full_tensor()
    if reduce_mean is not None:
        total, total_aux, total_z = reduce_mean(total), reduce_mean(total_aux), reduce_mean(total_z)
    finite = bool(torch.isfinite(total)) and bool(torch.isfinite(norm))
    if finite:
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
    elif scaler is not None:
        scaler.update()  # fp16 overflow: the scaler lowers its scale; not counted as a failure by the caller
    optimizer.zero_grad(set_to_none=True)
    return StepResult(loss=float(total), aux_loss=float(total_aux), grad_norm=float(norm), finite=finite,
                      expert_load=tuple(x / accum for x in loads), z_loss=float(total_z), dropped=dropped)
