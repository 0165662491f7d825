"""Data parallelism under torchrun: DDP or FSDP2 (`fully_shard`), chosen by `train.parallel`.

- `ddp`: every process holds the whole model; gradients are all-reduced (averaged) in backward.
- `fsdp`: parameters, gradients and optimizer state are sharded across processes (FSDP2, per-parameter
  DTensor sharding); each Transformer block is one all-gather unit, the root holds embeddings, final norm and
  head. On CUDA with bf16 the mixed-precision policy computes in bf16 and reduces gradients in fp32.

Saving always goes through full (unsharded) state dicts keyed by parameter name
(`torch.distributed.checkpoint.state_dict`), so a checkpoint written by N processes loads in one, and one
written by one process resumes under N.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)

from llmfs.runtime import Runtime


def wrap_model(model: torch.nn.Module, parallel: str, rt: Runtime) -> torch.nn.Module:
    """The module to train: `model` itself for one process, else wrapped for DDP or sharded by FSDP2."""
    if rt.dist.world_size == 1:
        return model
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        # an MoE expert that receives no token in a step gets no gradient: DDP must be told to expect that
        return DistributedDataParallel(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None,
                                       find_unused_parameters=model.cfg.n_experts > 0)
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy()
    if rt.device.type == "cuda" and rt.precision == "bf16":
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for layer in model.layers:
        fully_shard(layer, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    if model.cfg.n_experts > 0:
        # as DDP's find_unused_parameters above: an expert with no token on one rank and some on another would
        # give the ranks reduce-scatters of different sizes (a hang); zeros stand in for the missing gradients
        model.set_reduce_scatter_unused_params(True)
    return model


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DDP / torch.compile wrappers (FSDP2 shards in place: nothing to unwrap)."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def no_sync(model: torch.nn.Module) -> Callable[[], contextlib.AbstractContextManager] | None:
    """A context that skips the gradient all-reduce (for every micro-batch but the last), or None."""
    if hasattr(model, "no_sync"):  # DDP
        return model.no_sync
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2

        @contextlib.contextmanager
        def fsdp_no_sync():
            model.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                model.set_requires_gradient_sync(True)

        return fsdp_no_sync
    return None


def reduce_mean(rt: Runtime) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if rt.dist.world_size == 1:
        return None

    def mean(t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t / rt.dist.world_size

    return mean


def any_rank(rt: Runtime) -> Callable[[bool], bool]:
    """flag -> True on every rank when it is True on any rank (one all-reduce of one number); the flag itself
    for one process. Why: torchrun delivers Ctrl-C / SIGTERM to each process on its own, so one rank can see it
    a step before another; if that rank alone saved and left, the others would wait forever in their next
    collective (FSDP's save gathers the weights from every rank)."""
    if rt.dist.world_size == 1:
        return lambda flag: flag

    def reduce(flag: bool) -> bool:
        t = torch.tensor([int(flag)], device=rt.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    return reduce


def same_on_every_rank(rt: Runtime, value: int) -> bool:
    """Whether every process holds the same integer (two all-reduces: max and min); True for one process."""
    if rt.dist.world_size == 1:
        return True
    t = torch.tensor([value, -value], device=rt.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t[0]) == value and int(-t[1]) == value


_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Unsharded CPU weights keyed like the plain module (collective under FSDP: call on every rank; with
    several processes only rank 0 receives them, the others get an empty dict)."""
    plain = unwrap(model)
    state = get_model_state_dict(plain, options=_FULL)
    # gathered copies lose the sharing: tie once (a reward model has no lm_head; its names start with backbone.)
    if "embed_tokens.weight" in state and getattr(plain.cfg, "tie_embeddings", False):
        state["lm_head.weight"] = state["embed_tokens.weight"]
    return state


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Unsharded optimizer state keyed by parameter name (collective under FSDP: call on every rank)."""
    return get_optimizer_state_dict(unwrap(model), optimizer, options=_FULL)


def load_full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    model_state: dict[str, torch.Tensor] | None, optim_state: dict[str, Any] | None) -> None:
    """Load full state dicts into a (possibly sharded) model and its optimizer on every rank."""
    plain = unwrap(model)
    opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=False)
    if model_state is not None:
        set_model_state_dict(plain, model_state, options=opts)
    if optimizer is not None and optim_state is not None:
        set_optimizer_state_dict(plain, optimizer, optim_state, options=opts)
