"""The step loop every trainer shares (pretrain, sft, grpo, ...): run directory rules, stop signals, logging
cadence, evaluation, samples and checkpoints. A stage supplies plain functions (its batches and loss, or its own
update for RL; its evaluation, its save); the loop owns the order in which they run, so resume, Ctrl-C and
non-finite handling behave the same in every stage.

Exact resume: the batch of step s must be a pure function of (seed, s) (each stage's `batches`), and the global
torch RNG (dropout) is re-seeded from (seed, s, rank) before each step, so a run stopped at step k and resumed
computes bit-for-bit what the uninterrupted run computes. SIGINT / SIGTERM finish the current step, save a
checkpoint and return.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, NamedTuple, TypeVar

import torch

from llmfs import checkpoint as ck
from llmfs.config import option
from llmfs.errors import LlmfsError
from llmfs.metrics import Metrics
from llmfs.runtime import Runtime
from llmfs.train.optim import set_lr
from llmfs.train.step import StepResult, counts_as_failure, train_step

T = TypeVar("T")


class Stop:
    """Set by SIGINT / SIGTERM; the loop saves and exits after the current step."""

    def __init__(self):
        self.requested = False

    def __call__(self, signum, frame):  # noqa: ANN001 - signal handler signature
        self.requested = True


def check_run_dir(run_dir: Path, recipe_text: str, resume: bool, force: bool) -> Path | None:
    """The checkpoint to resume from, or None for a fresh run; refuse a changed recipe unless forced. A finished
    run counts even without step checkpoints (save_every = 0): its `final/` holds the resume state, so running it
    again with more steps continues it instead of starting over on top of its metrics."""
    has_ckpt = (run_dir / "latest").is_file() or (run_dir / "final" / ck.CONFIG_FILE).is_file()
    if not has_ckpt:
        if resume:
            raise LlmfsError(f"--resume: {run_dir} has no checkpoint to resume from")
        return None
    old = (run_dir / "recipe.toml").read_text(encoding="utf-8") if (run_dir / "recipe.toml").is_file() else ""
    if old != recipe_text and not force:
        changed = changed_keys(old, recipe_text)
        raise LlmfsError(f"{run_dir} holds a run with a different recipe (changed: {', '.join(changed) or '?'}); "
                         "set another run.name, or pass --force to continue it with the new recipe")
    return newest_checkpoint(run_dir)


def newest_checkpoint(run_dir: Path) -> Path:
    """`final/` or the step checkpoint `latest` names, whichever has trained further. Not `ck.resolve`, which
    prefers `final/` (the finished model, what generate / sft read): a finished run continued with more steps and
    then interrupted holds an old `final/` and a newer `latest`, and must resume from the newer one."""
    candidates = [run_dir / "final"] if (run_dir / "final" / ck.CONFIG_FILE).is_file() else []
    if (run_dir / "latest").is_file():
        candidates.append(run_dir / (run_dir / "latest").read_text(encoding="utf-8").strip())

    def trained_steps(path: Path) -> int:  # -1 without (readable) resume state; ties keep final/ (listed first)
        try:
            return int(json.loads((path / ck.TRAINER_FILE).read_text(encoding="utf-8"))["step"])
        except (OSError, ValueError, KeyError, TypeError):  # opening it for the resume reports what is wrong
            return -1

    return max(candidates, key=trained_steps)


def changed_keys(old: str, new: str) -> list[str]:
    import tomllib

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    a, b = flat(tomllib.loads(old or "")), flat(tomllib.loads(new))
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def plan_batches(batch_size: int, micro_batch_size: int, world: int, unit: str = "windows") -> tuple[int, int]:
    """(rows per forward, micro-batches per step); a clear error when the batch does not divide."""
    if batch_size % world:
        raise LlmfsError(f"data.batch_size {batch_size} is not divisible by the {world} processes; "
                         f"use a multiple of {world}")
    per_rank = batch_size // world
    micro = micro_batch_size or per_rank
    if per_rank % micro:
        raise LlmfsError(f"data.micro_batch_size {micro} does not divide the {per_rank} {unit} each process "
                         f"takes per step (data.batch_size {batch_size} / {world} processes)")
    return micro, per_rank // micro


def barrier(rt: Runtime) -> None:
    if rt.dist.world_size > 1:
        torch.distributed.barrier()


def rank0_then_each_node(rt: Runtime, prepare: Callable[[], T]) -> T:
    """Run `prepare` (make files in the run directory, or read them when they are there) on rank 0 first, then on
    the first process of every other node, then on every remaining process, with barriers between. On one
    filesystem shared by all nodes only rank 0 writes and everyone else reads; on a node that does not share
    rank 0's filesystem, its first process makes its own copy (preparation is deterministic) before the others
    on that node read it, so no two processes ever write the same directory at once."""
    if rt.dist.world_size == 1:
        return prepare()
    result = prepare() if rt.dist.is_main else None
    barrier(rt)
    if rt.dist.local_rank == 0 and not rt.dist.is_main:
        result = prepare()
    barrier(rt)
    if rt.dist.local_rank != 0:
        result = prepare()
    return result


def peak_flops(rt: Runtime, seconds: float = 0.2) -> float | None:
    """Matmul FLOP/s measured here (the MFU denominator), or None if it cannot be measured quickly."""
    from llmfs.bench.peak import measure_matmul_flops

    dtype = rt.autocast_dtype or torch.float32
    return measure_matmul_flops(rt.device, dtype, seconds=seconds)


def model_flops_utilization(flops_per_token: float, tokens_per_s: float, peak: float, devices: int) -> float:
    """MFU: the model FLOP/s each device achieves over one device's measured matmul peak. `tokens_per_s` counts the
    whole global batch (every process's tokens), so it is shared out over the `devices` first."""
    return flops_per_token * tokens_per_s / devices / peak


@dataclasses.dataclass(frozen=True)
class FinetuneTrainConfig:
    """The `[train]` section of the stages that start from a checkpoint and step through batches (sft, reward)."""

    max_steps: int = option(300, ge=1)
    eval_every: int = option(100, ge=0, doc="steps between evaluations; 0 = only before and after")
    save_every: int = option(0, ge=0, doc="steps between checkpoints; 0 = only the final one")
    keep_last: int = option(2, ge=1)
    parallel: Literal["ddp", "fsdp"] = "ddp"
    compile: bool = False
    max_skips: int = option(0, ge=0, doc="non-finite steps skipped before stopping")


@dataclasses.dataclass
class Progress:
    """What trainer_state.json carries besides the seed: where the run is."""

    step: int = 0
    tokens_seen: int = 0
    skips: int = 0
    # fp16's GradScaler (its scale and growth counter, plain numbers): a resumed run continues with the scale the
    # interrupted one had reached, not the initial 2^16 (which would skip steps the uninterrupted run did not)
    grad_scaler: dict | None = None


def prepare_training(model: torch.nn.Module, rt: Runtime, *, parallel: str, optim, resume_from: Path | None,
                     read_state: Callable[[ck.Checkpoint], dict] | None = None
                     ) -> tuple[torch.nn.Module, torch.optim.Optimizer, Progress]:
    """Wrap the model for the processes (DDP / FSDP2), build its optimizer and load the resume state when there
    is one: (the module to train, its optimizer, where the run is). `read_state(checkpoint)` gives
    the model's full state when it is not just model.safetensors (the inverse of save_checkpoint's split)."""
    from llmfs.train import distributed as D
    from llmfs.train.optim import build_optimizer

    ckpt = ck.open_checkpoint(resume_from) if resume_from is not None else None
    state = ck.load_resume_state(ckpt) if ckpt is not None else None
    step = state.trainer["step"] if state is not None else 0
    if not D.same_on_every_rank(rt, step):
        raise LlmfsError(f"the processes disagree on where the run is: rank {rt.dist.rank} "
                         f"{f'resumes from {ckpt.path} (step {step})' if ckpt else 'sees no checkpoint'} and "
                         "another does not; under torchrun on several machines every node must see run.out_dir "
                         "on one shared filesystem (checkpoints are written by rank 0 and read by all)")
    # read (and check) the full weights against the plain module: FSDP2 shards `model` in place below
    weights = None
    if ckpt is not None:
        weights = read_state(ckpt) if read_state is not None else ck.read_weights(ckpt, model)
    trained = D.wrap_model(model, parallel, rt)
    optimizer = build_optimizer(trained, optim, rt.device)
    progress = Progress()
    if ckpt is not None:
        D.load_full_state(trained, optimizer, weights, dict(state.optimizer))
        progress = Progress(step, state.trainer.get("tokens_seen", 0), state.trainer.get("skips", 0),
                            state.trainer.get("grad_scaler"))
    return trained, optimizer, progress


def save_checkpoint(trained: torch.nn.Module, optimizer: torch.optim.Optimizer, rt: Runtime, *, run_dir: Path,
                    step: int, final: bool, keep_last: int, progress: Progress, seed: int, recipe_text: str,
                    split_state: Callable[[dict], tuple[dict, dict]] | None = None, **save_kwargs) -> Path | None:
    """Gather the full model and optimizer state (a collective under FSDP: every rank calls this) and, on the
    main process, write `run_dir/final` or `run_dir/step-N` with the resume state. `save_kwargs` go to
    `checkpoint.save` (kind, model_config, tokenizer_json, parent, extra). `split_state(full state) ->
    (model state, side weights)` keeps a module later stages do not read out of model.safetensors (PPO's value
    model)."""
    from llmfs.config import sha256_text
    from llmfs.train import distributed as D

    state = D.full_model_state(trained)
    opt_state = D.full_optimizer_state(trained, optimizer)
    if not rt.dist.is_main:
        return None
    resume = ck.ResumeState(optimizer=opt_state, trainer={
        "step": step, "tokens_seen": progress.tokens_seen, "skips": progress.skips, "seed": seed,
        "recipe_sha256": sha256_text(recipe_text),
        **({"grad_scaler": progress.grad_scaler} if progress.grad_scaler is not None else {})})
    side = None
    if split_state is not None:
        state, side = split_state(state)
    kwargs = dict(state_dict=state, recipe_toml=recipe_text, resume=resume, side_weights=side, **save_kwargs)
    if final:
        return ck.save(run_dir / "final", **kwargs)
    return ck.save_step(run_dir, step, keep_last=keep_last, **kwargs)


@dataclasses.dataclass(frozen=True)
class Cadence:
    total: int  # steps
    log_every: int
    eval_every: int  # 0 = only at the end
    sample_every: int  # 0 = only at the end
    save_every: int  # 0 = only the final checkpoint
    max_skips: int  # non-finite steps tolerated


@dataclasses.dataclass(frozen=True)
class Stage:
    """The stage-specific functions the loop calls."""

    lr_at: Callable[[int], float]
    evaluate: Callable[[int], dict]  # step -> metrics to log as kind "eval"
    sample: Callable[[int], None]
    save: Callable[[int, bool], Path | None]  # (step, final) -> directory (None on non-main ranks)
    # A supervised stage gives its batches and loss, and each step is one `train_step`:
    batches: Callable[[int], tuple[list[tuple[torch.Tensor, ...]], int]] | None = None  # step -> (micro, tokens)
    loss_fn: Callable | None = None  # (model, *tensors) -> (loss, output), see train_step
    # An RL stage gives its own step instead (rollout, then several optimizer updates):
    # (step, fp16's GradScaler or None) -> (result, tokens, metrics)
    update: Callable[[int, torch.amp.GradScaler | None], tuple[StepResult, int, dict]] | None = None
    flops_per_token: float = 0.0
    compile: bool = False  # torch.compile loss_fn: the model's forward and the loss in one graph


class MoETerms(NamedTuple):
    """What train_step reads from a model output besides the loss (zeros and () for a dense model)."""

    aux_loss: torch.Tensor | float
    z_loss: torch.Tensor | float
    expert_load: tuple[torch.Tensor, ...]
    dropped: tuple[torch.Tensor, ...] = ()


def _loss_and_moe_terms(loss_fn: Callable, model: torch.nn.Module, *tensors: torch.Tensor):
    main, out = loss_fn(model, *tensors)
    return main, MoETerms(getattr(out, "aux_loss", 0.0), getattr(out, "z_loss", 0.0),
                          tuple(getattr(out, "expert_load", ())), tuple(getattr(out, "dropped", ())))


def train_loop(trained: torch.nn.Module, optimizer: torch.optim.Optimizer, rt: Runtime, stage: Stage,
               cadence: Cadence, progress: Progress, *, seed: int, grad_clip: float, metrics: Metrics,
               final_dir: Path, resumed_from: Path | None, peak: float | None) -> Path:
    """Run steps progress.step .. cadence.total; return the final checkpoint (or the last one saved when a
    stop signal came)."""
    scaler = rt.grad_scaler()
    if scaler is not None and progress.grad_scaler is not None:
        scaler.load_state_dict(progress.grad_scaler)
    stop = Stop()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    peak_rechecked = False
    from llmfs.train import distributed as D

    stop_agreed = D.any_rank(rt)
    start, total = progress.step, cadence.total
    loss_fn = stage.loss_fn
    if stage.compile and loss_fn is not None:
        # The forward *and* the loss in one graph, so the loss's softmax and its backward can fuse with the head
        # (compiling the module alone stops at the logits); only the loss and the MoE terms leave the graph, so
        # the (B, T, V) logits need not be kept as an output. Measured in docs/bench/nanogpt.md. Evaluation and
        # sampling keep the eager model (their shapes vary).
        loss_fn = torch.compile(functools.partial(_loss_and_moe_terms, stage.loss_fn))
    last_saved = resumed_from
    tokens_since = 0
    try:
        t_last = time.perf_counter()
        for step in range(start, total):
            torch.manual_seed(hash((seed, step, rt.dist.rank)) % 2**63)  # dropout, per step
            lr = stage.lr_at(step)
            set_lr(optimizer, lr)
            extra: dict = {}
            if stage.update is not None:
                result, n_tokens, extra = stage.update(step, scaler)
            else:
                micro, n_tokens = stage.batches(step)
                result = train_step(trained, optimizer, micro, loss_fn, autocast=rt.autocast,
                                    grad_clip=grad_clip, scaler=scaler, no_sync=D.no_sync(trained),
                                    reduce_mean=D.reduce_mean(rt))
            if counts_as_failure(result, scaled=scaler is not None):
                progress.skips += 1
                if progress.skips > cadence.max_skips:
                    where = f"the last good checkpoint is {last_saved}" if last_saved else "no checkpoint was saved yet"
                    raise LlmfsError(f"non-finite loss or gradient at step {step + 1} (loss {result.loss}, grad norm "
                                     f"{result.grad_norm}); the update was not applied; {where}. Lower optim.lr, "
                                     "or allow skips with train.max_skips")
            progress.tokens_seen += n_tokens
            tokens_since += n_tokens
            done = progress.step = step + 1
            metrics.advance(done)
            if done % cadence.log_every == 0 or done == total:
                tps = tokens_since / max(time.perf_counter() - t_last, 1e-9)
                values = {"loss": result.loss, "lr": lr, "grad_norm": result.grad_norm, "tok_per_s": tps}
                if peak and stage.flops_per_token:
                    mfu = model_flops_utilization(stage.flops_per_token, tps, peak, rt.dist.world_size)
                    if mfu > 1 and not peak_rechecked:
                        # above the peak: the start-up measurement came out low (another process had the CPU
                        # then); measure once more, longer, and keep the higher (not counted in tok_per_s)
                        peak, peak_rechecked = max(peak, peak_flops(rt, seconds=1.0) or 0.0), True
                        mfu = model_flops_utilization(stage.flops_per_token, tps, peak, rt.dist.world_size)
                    values["mfu"] = mfu
                if result.aux_loss:
                    values["moe_aux"] = result.aux_loss  # load-balancing + z terms, as added to the loss
                    values["moe_z"] = result.z_loss
                    values["expert_load_max"] = max(float(x.max()) for x in result.expert_load)
                    values["expert_load"] = [[round(float(v), 4) for v in x] for x in result.expert_load]
                    values["moe_dropped"] = result.dropped  # assignments over capacity (this process)
                if progress.skips:
                    values["skipped"] = progress.skips
                values.update(extra)
                metrics.log(done, values)
                t_last, tokens_since = time.perf_counter(), 0
            paused = time.perf_counter()  # evaluation, samples and saving are not counted in tok_per_s
            if cadence.eval_every and done % cadence.eval_every == 0 and done < total:
                metrics.log(done, stage.evaluate(done), kind="eval")
            if cadence.sample_every and done % cadence.sample_every == 0 and done < total:
                stage.sample(done)
            stopping = stop_agreed(stop.requested)  # every rank stops after the same step
            if (cadence.save_every and done % cadence.save_every == 0 and done < total) or stopping:
                progress.grad_scaler = scaler.state_dict() if scaler is not None else None  # saved with the step
                last_saved = stage.save(done, False) or last_saved
                if stopping:
                    if rt.dist.is_main:  # not progress output: shown even with --quiet
                        print(f"stopped at step {done}; saved {last_saved}; run the same command to resume",
                              file=sys.stderr, flush=True)
                    return last_saved
            t_last += time.perf_counter() - paused
        metrics.log(total, stage.evaluate(total), kind="eval")
        stage.sample(total)
        progress.grad_scaler = scaler.state_dict() if scaler is not None else None
        final = stage.save(total, True)
        metrics.message(f"saved {final}")
        return final_dir
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
