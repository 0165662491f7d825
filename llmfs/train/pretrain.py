"""`llmfs pretrain RECIPE`: next-token pretraining, from one CPU to many GPUs under torchrun.

run(recipe) reads top to bottom:
  runtime -> run directory (resume or refuse a changed recipe) -> tokenizer and token shards -> model
  -> optimizer -> resume state -> loop: batch_at(step) -> train_step (accumulation, AMP, clipping, non-finite
  guard) -> lr_at(step) -> metrics -> evaluation / samples / checkpoint on schedule -> final checkpoint.

Exact resume: the batch of step s is a pure function of (seed, s) (`llmfs/data/shards.py`), and the global
torch RNG (dropout) is re-seeded from (seed, s, rank) before each step, so a run stopped at step k and resumed
computes bit-for-bit what the uninterrupted run computes. SIGINT / SIGTERM finish the current step, save a
checkpoint and exit.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import sys
import time
from pathlib import Path
from typing import Literal

import torch

from llmfs import checkpoint as ck
from llmfs.config import dump_toml, invalid, option, sha256_text
from llmfs.errors import LlmfsError
from llmfs.infer.sampling import SamplingConfig
from llmfs.metrics import LogConfig, Metrics
from llmfs.model.config import ModelConfig
from llmfs.runtime import RunConfig, Runtime, setup, teardown
from llmfs.train.optim import OptimConfig, build_optimizer, set_lr
from llmfs.tokenizer.registry import TokenizerConfig
from llmfs.train.pretrain_data import DataConfig
from llmfs.train.schedule import ScheduleConfig, check_fits, lr_at


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The pretraining `[train]` section."""

    max_steps: int = option(2000, ge=1)
    eval_every: int = option(250, ge=0, doc="steps between evaluations; 0 = only at the end")
    sample_every: int = option(500, ge=0, doc="steps between sampled continuations; 0 = only at the end")
    sample_prompts: tuple[str, ...] = ("Once upon a time", "One day, a little")
    sample_tokens: int = option(64, ge=1)
    save_every: int = option(500, ge=0, doc="steps between checkpoints; 0 = only the final one")
    keep_last: int = option(2, ge=1, doc="step checkpoints kept")
    parallel: Literal["ddp", "fsdp"] = "ddp"  # under torchrun with several processes
    compile: bool = False  # torch.compile the model (CUDA: worth it for long runs)
    activation_checkpointing: bool = False  # recompute block activations in backward: less memory, ~30% slower
    max_skips: int = option(0, ge=0, doc="non-finite steps skipped before stopping; 0 = stop at the first")


@dataclasses.dataclass(frozen=True)
class PretrainRecipe:
    model: ModelConfig
    run: RunConfig = RunConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    train: TrainConfig = TrainConfig()
    log: LogConfig = LogConfig()

    def validate(self) -> None:
        if self.data.seq_len > self.model.max_seq_len:
            raise invalid("data.seq_len", f"{self.data.seq_len} is longer than model.max_seq_len "
                                          f"{self.model.max_seq_len}")
        if self.model.window is not None and self.model.window > self.data.seq_len:
            raise invalid("model.window", f"{self.model.window} is larger than the training context "
                                          f"data.seq_len {self.data.seq_len}")
        if self.tokenizer.kind == "byte" and not self.tokenizer.path and self.model.vocab_size < 257:
            raise invalid("model.vocab_size", "a byte tokenizer needs 257 ids (256 bytes + <|endoftext|>)")
        if not self.tokenizer.path and self.tokenizer.kind == "bpe" and \
                self.model.vocab_size < self.tokenizer.vocab_size:
            raise invalid("model.vocab_size", f"{self.model.vocab_size} is smaller than tokenizer.vocab_size "
                                              f"{self.tokenizer.vocab_size}")
        check_fits(self.schedule, self.train.max_steps)


class _Stop:
    """Set by SIGINT / SIGTERM; the loop saves and exits after the current step."""

    def __init__(self):
        self.requested = False

    def __call__(self, signum, frame):  # noqa: ANN001 - signal handler signature
        self.requested = True


def _plan_batches(recipe: PretrainRecipe, world: int) -> tuple[int, int]:
    """(rows per forward, micro-batches per step); a clear error when the batch does not divide."""
    d = recipe.data
    if d.batch_size % world:
        raise LlmfsError(f"data.batch_size {d.batch_size} is not divisible by the {world} processes; "
                         f"use a multiple of {world}")
    per_rank = d.batch_size // world
    micro = d.micro_batch_size or per_rank
    if per_rank % micro:
        raise LlmfsError(f"data.micro_batch_size {micro} does not divide the {per_rank} windows each process "
                         f"takes per step (data.batch_size {d.batch_size} / {world} processes)")
    return micro, per_rank // micro


def _check_run_dir(run_dir: Path, recipe_text: str, resume: bool, force: bool) -> Path | None:
    """The checkpoint to resume from, or None for a fresh run; refuse a changed recipe unless forced."""
    has_ckpt = (run_dir / "latest").is_file()
    if not has_ckpt:
        if resume:
            raise LlmfsError(f"--resume: {run_dir} has no checkpoint to resume from")
        return None
    old = (run_dir / "recipe.toml").read_text(encoding="utf-8") if (run_dir / "recipe.toml").is_file() else ""
    if old != recipe_text and not force:
        changed = _changed_keys(old, recipe_text)
        raise LlmfsError(f"{run_dir} holds a run with a different recipe (changed: {', '.join(changed) or '?'}); "
                         "set another run.name, or pass --force to continue it with the new recipe")
    return ck.resolve(run_dir)


def _changed_keys(old: str, new: str) -> list[str]:
    import tomllib

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    a, b = flat(tomllib.loads(old or "")), flat(tomllib.loads(new))
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def run(recipe: PretrainRecipe, *, resume: bool = False, force: bool = False, device: str | None = None,
        precision: str | None = None, quiet: bool = False) -> Path:
    """Train, checkpoint and return the final checkpoint directory."""
    from llmfs.data.shards import BatchPlan, batch_at, sequential_windows
    from llmfs.infer.generate import generate
    from llmfs.model.transformer import Transformer
    from llmfs.tokenizer.hf import sha256 as tokenizer_sha256
    from llmfs.train import distributed as D
    from llmfs.train.evaluate import evaluate_lm, token_byte_lengths
    from llmfs.train.pretrain_data import prepare_shards, prepare_tokenizer
    from llmfs.train.step import lm_loss, train_step

    rt = setup(recipe.run, device=device, precision=precision)
    main = rt.dist.is_main
    run_dir = Path(recipe.run.out_dir) / recipe.run.name
    recipe_text = dump_toml(recipe)
    resume_from = _check_run_dir(run_dir, recipe_text, resume, force)
    micro_rows, accum = _plan_batches(recipe, rt.dist.world_size)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        ck.write_text_atomic(run_dir / "recipe.toml", recipe_text)

    # ---------------------------------------------------------------------------------------- data
    if main:
        tokenizer, tok_dir = prepare_tokenizer(recipe.tokenizer, recipe.data, run_dir, quiet)
    _barrier(rt)
    if not main:
        tokenizer, tok_dir = prepare_tokenizer(recipe.tokenizer, recipe.data, run_dir, quiet)
    tok_sha = tokenizer_sha256(tok_dir)
    if tokenizer.vocab_size > recipe.model.vocab_size:
        raise LlmfsError(f"model.vocab_size {recipe.model.vocab_size} is smaller than the tokenizer's "
                         f"{tokenizer.vocab_size} ids ({tok_dir}); set model.vocab_size = {tokenizer.vocab_size}")
    if main:
        train_shards, valid_shards = prepare_shards(recipe.data, tokenizer, tok_sha, run_dir, quiet)
    _barrier(rt)
    if not main:
        train_shards, valid_shards = prepare_shards(recipe.data, tokenizer, tok_sha, run_dir, quiet)
    weights = list(recipe.data.sources.values())
    seq_len = recipe.data.seq_len
    valid_windows = [sequential_windows(v, seq_len, recipe.data.eval_windows) for v in valid_shards]
    byte_lengths = token_byte_lengths(tokenizer, recipe.model.vocab_size)

    # --------------------------------------------------------------------------------------- model
    gen = torch.Generator().manual_seed(recipe.run.seed)
    model = Transformer(recipe.model, generator=gen).to(rt.device)
    if recipe.train.activation_checkpointing:
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

        for i, layer in enumerate(model.layers):
            model.layers[i] = checkpoint_wrapper(layer)
    trained = D.wrap_model(model, recipe.train.parallel, rt)
    optimizer = build_optimizer(trained, recipe.optim, rt.device)
    start_step, skips, tokens_seen = 0, 0, 0
    if resume_from is not None:
        ckpt = ck.open_checkpoint(resume_from)
        state = ck.load_resume_state(ckpt)
        weights_state = ck.read_weights(ckpt, model)
        D.load_full_state(trained, optimizer, weights_state, dict(state.optimizer))
        start_step, skips, tokens_seen = (state.trainer["step"], state.trainer.get("skips", 0),
                                          state.trainer.get("tokens_seen", 0))
    if recipe.train.compile:
        trained = torch.compile(trained)
    scaler = rt.grad_scaler()
    total = recipe.train.max_steps
    tokens_per_step = recipe.data.batch_size * seq_len
    flops_per_token = model.flops_per_token(seq_len)
    peak = _peak_flops(rt) if main else None

    def loss_fn(m, x, y):
        out = m(x)
        return lm_loss(out.logits, y), out

    def save(step: int, final: bool) -> Path | None:
        state = D.full_model_state(trained)
        opt_state = D.full_optimizer_state(trained, optimizer)
        if not main:
            return None
        kwargs = dict(kind="causal_lm", model_config=dataclasses.asdict(recipe.model), state_dict=state,
                      tokenizer_json=tok_dir / "tokenizer.json", recipe_toml=recipe_text,
                      resume=ck.ResumeState(optimizer=opt_state, trainer={
                          "step": step, "tokens_seen": tokens_seen, "skips": skips, "seed": recipe.run.seed,
                          "recipe_sha256": sha256_text(recipe_text)}),
                      extra={"stage": "pretrain", "step": step, "tokenizer_sha256": tok_sha})
        if final:
            return ck.save(run_dir / "final", **kwargs)
        return ck.save_step(run_dir, step, keep_last=recipe.train.keep_last, **kwargs)

    def evaluate(step: int) -> dict:
        results = {}
        for spec, windows in zip(recipe.data.sources, valid_windows):
            r = evaluate_lm(model, windows, byte_lengths, batch_size=micro_rows, device=rt.device,
                            autocast=rt.autocast)
            prefix = "" if len(valid_windows) == 1 else f"{spec}/"
            results.update({f"{prefix}val_loss": r["loss"], f"{prefix}val_bpb": r["bpb"]})
        return results

    def samples(step: int) -> None:
        # every rank generates (under FSDP each forward is a collective); the same seed gives the same text
        prompts = [tokenizer.encode(p) for p in recipe.train.sample_prompts if p]
        if not prompts:
            return
        cfg = SamplingConfig(temperature=0.8, top_k=50, max_new_tokens=recipe.train.sample_tokens)
        outs = generate(model, prompts, cfg, generator=torch.Generator(rt.device).manual_seed(step),
                        stop_ids=[tokenizer.eot_id] if tokenizer.eot_id is not None else [])
        for p, o in zip(recipe.train.sample_prompts, outs):
            metrics.log(step, {"prompt": p, "text": p + tokenizer.decode(o)}, kind="sample")

    # ---------------------------------------------------------------------------------------- loop
    stop = _Stop()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    metrics = Metrics(run_dir, recipe.log, total_steps=total, is_main=main, quiet=quiet,
                      run_name=recipe.run.name, config={"recipe": recipe_text}, description="pretrain")
    last_saved = resume_from
    metrics.message(f"llmfs pretrain: {rt.describe()}, {model.num_params():,} parameters, "
                    f"{tokens_per_step:,} tokens per step, steps {start_step}..{total}")
    plan = BatchPlan(recipe.data.batch_size, seq_len, rt.dist.rank, rt.dist.world_size)
    try:
        t_last, step = time.perf_counter(), start_step
        for step in range(start_step, total):
            torch.manual_seed(hash((recipe.run.seed, step, rt.dist.rank)) % 2**63)  # dropout, per step
            rows = torch.from_numpy(batch_at(step, recipe.run.seed, train_shards, weights, plan)).to(rt.device)
            micro = [(rows[i * micro_rows:(i + 1) * micro_rows, :-1], rows[i * micro_rows:(i + 1) * micro_rows, 1:])
                     for i in range(accum)]
            lr = lr_at(step, recipe.optim.lr, total, recipe.schedule)
            set_lr(optimizer, lr)
            result = train_step(trained, optimizer, micro, loss_fn, autocast=rt.autocast,
                                grad_clip=recipe.optim.grad_clip, scaler=scaler, no_sync=D.no_sync(trained),
                                reduce_mean=D.reduce_mean(rt))
            if not result.finite and scaler is None:
                skips += 1
                if skips > recipe.train.max_skips:
                    where = f"the last good checkpoint is {last_saved}" if last_saved else "no checkpoint was saved yet"
                    raise LlmfsError(f"non-finite loss or gradient at step {step} (loss {result.loss}, grad norm "
                                     f"{result.grad_norm}); the update was not applied; {where}. Lower optim.lr, "
                                     "or allow skips with train.max_skips")
            tokens_seen += tokens_per_step
            done = step + 1
            metrics.advance(done)
            if done % recipe.log.every == 0 or done == total:
                dt = time.perf_counter() - t_last
                steps_done = recipe.log.every if done % recipe.log.every == 0 else done - start_step
                tps = tokens_per_step * steps_done / max(dt, 1e-9)
                values = {"loss": result.loss, "lr": lr, "grad_norm": result.grad_norm, "tok_per_s": tps}
                if peak:
                    values["mfu"] = flops_per_token * tps / peak
                if result.aux_loss:
                    values["moe_aux"] = result.aux_loss
                    values["expert_load_max"] = max(float(x.max()) for x in result.expert_load)
                if skips:
                    values["skipped"] = skips
                metrics.log(done, values)
                t_last = time.perf_counter()
            if recipe.train.eval_every and done % recipe.train.eval_every == 0 and done < total:
                metrics.log(done, evaluate(done), kind="eval")
            if recipe.train.sample_every and done % recipe.train.sample_every == 0 and done < total:
                samples(done)
            if (recipe.train.save_every and done % recipe.train.save_every == 0 and done < total) or stop.requested:
                last_saved = save(done, final=False) or last_saved
                if stop.requested:
                    if main:  # not progress output: shown even with --quiet
                        print(f"stopped at step {done}; saved {last_saved}; run the same command to resume",
                              file=sys.stderr, flush=True)
                    return last_saved
        metrics.log(total, evaluate(total), kind="eval")
        samples(total)
        final = save(total, final=True)
        metrics.message(f"saved {final}")
        return run_dir / "final"
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        metrics.close()
        teardown(rt)


def _barrier(rt: Runtime) -> None:
    if rt.dist.world_size > 1:
        torch.distributed.barrier()


def _peak_flops(rt: Runtime) -> float | None:
    """Matmul FLOP/s measured here (the MFU denominator), or None if it cannot be measured quickly."""
    from llmfs.bench.peak import measure_matmul_flops

    dtype = rt.autocast_dtype or torch.float32
    return measure_matmul_flops(rt.device, dtype, seconds=0.2)
