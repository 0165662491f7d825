"""`llmfs pretrain RECIPE`: next-token pretraining, from one CPU to many GPUs under torchrun.

run(recipe) reads top to bottom:
  runtime -> run directory (resume or refuse a changed recipe) -> tokenizer and token shards -> model
  -> optimizer -> resume state -> the shared loop (`llmfs/train/loop.py`): batch_at(step) -> train_step
  (accumulation, AMP, clipping, non-finite guard) -> lr_at(step) -> metrics -> evaluation / samples /
  checkpoint on schedule -> final checkpoint.

Exact resume: the batch of step s is a pure function of (seed, s) (`llmfs/data/shards.py`); the loop re-seeds
dropout per step, so a run stopped at step k and resumed computes bit-for-bit what the uninterrupted run
computes. SIGINT / SIGTERM finish the current step, save a checkpoint and exit.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import torch

from llmfs import checkpoint as ck
from llmfs.config import dump_toml, invalid, option
from llmfs.errors import LlmfsError
from llmfs.infer.sampling import SamplingConfig
from llmfs.metrics import LogConfig, Metrics
from llmfs.model.config import ModelConfig
from llmfs.runtime import RunConfig, setup, teardown
from llmfs.train.loop import (Cadence, Stage, check_run_dir, peak_flops, plan_batches, prepare_training,
                              rank0_then_each_node, save_checkpoint, train_loop)
from llmfs.train.optim import OptimConfig
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
    compile: bool = False  # torch.compile the forward and loss (first steps pay the compile time)
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
        if self.train.sample_tokens >= self.model.max_seq_len:
            raise invalid("train.sample_tokens", f"{self.train.sample_tokens} sampled tokens do not fit the context "
                                                 f"model.max_seq_len {self.model.max_seq_len} with a prompt; lower it")
        check_fits(self.schedule, self.train.max_steps)


def run(recipe: PretrainRecipe, *, resume: bool = False, force: bool = False, device: str | None = None,
        precision: str | None = None, quiet: bool = False) -> Path:
    """Train, checkpoint and return the final checkpoint directory."""
    from llmfs.data.shards import BatchPlan, batch_at, sequential_windows
    from llmfs.infer.generate import generate
    from llmfs.model.transformer import Transformer
    from llmfs.tokenizer.hf import sha256 as tokenizer_sha256
    from llmfs.train.evaluate import evaluate_lm, mixture_eval, token_byte_lengths
    from llmfs.train.pretrain_data import prepare_shards, prepare_tokenizer
    from llmfs.train.step import lm_loss

    rt = setup(recipe.run, device=device, precision=precision)
    main = rt.dist.is_main
    run_dir = Path(recipe.run.out_dir) / recipe.run.name
    recipe_text = dump_toml(recipe)
    resume_from = check_run_dir(run_dir, recipe_text, resume, force)
    micro_rows, accum = plan_batches(recipe.data.batch_size, recipe.data.micro_batch_size, rt.dist.world_size)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        ck.write_text_atomic(run_dir / "recipe.toml", recipe_text)

    # ---------------------------------------------------------------------------------------- data
    tokenizer, tok_dir = rank0_then_each_node(rt, lambda: prepare_tokenizer(recipe.tokenizer, recipe.data,
                                                                             run_dir, quiet))
    tok_sha = tokenizer_sha256(tok_dir)
    if tokenizer.vocab_size > recipe.model.vocab_size:
        raise LlmfsError(f"model.vocab_size {recipe.model.vocab_size} is smaller than the tokenizer's "
                         f"{tokenizer.vocab_size} ids ({tok_dir}); set model.vocab_size = {tokenizer.vocab_size}")
    train_shards, valid_shards = rank0_then_each_node(rt, lambda: prepare_shards(recipe.data, tokenizer, tok_sha,
                                                                                  run_dir, quiet))
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
    trained, optimizer, progress = prepare_training(model, rt, parallel=recipe.train.parallel, optim=recipe.optim,
                                                    resume_from=resume_from)
    total = recipe.train.max_steps
    tokens_per_step = recipe.data.batch_size * seq_len

    def loss_fn(m, x, y):
        out = m(x)
        return lm_loss(out.logits, y), out

    def save(step: int, final: bool) -> Path | None:
        return save_checkpoint(trained, optimizer, rt, run_dir=run_dir, step=step, final=final,
                               keep_last=recipe.train.keep_last, progress=progress, seed=recipe.run.seed,
                               recipe_text=recipe_text, kind="causal_lm",
                               model_config=dataclasses.asdict(recipe.model), tokenizer_json=tok_dir / "tokenizer.json",
                               extra={"stage": "pretrain", "step": step, "tokenizer_sha256": tok_sha})

    def evaluate(step: int) -> dict:
        per_source = [evaluate_lm(model, windows, byte_lengths, batch_size=micro_rows, device=rt.device,
                                  autocast=rt.autocast) for windows in valid_windows]
        return mixture_eval(dict(zip(recipe.data.sources, per_source)), recipe.data.sources)

    def samples(step: int) -> None:
        # every rank generates (under FSDP each forward is a collective); the same seed gives the same text
        prompts = [tokenizer.encode(p) for p in recipe.train.sample_prompts if p]
        if not prompts:
            return
        # samples stay inside the context the model was trained on (and learned positions have no more)
        room = recipe.model.max_seq_len - max(len(p) for p in prompts)
        if room < 1:
            return
        cfg = SamplingConfig(temperature=0.8, top_k=50, max_new_tokens=min(recipe.train.sample_tokens, room))
        outs = generate(model, prompts, cfg, generator=torch.Generator(rt.device).manual_seed(step),
                        stop_ids=[tokenizer.eot_id] if tokenizer.eot_id is not None else [])
        for p, o in zip(recipe.train.sample_prompts, outs):
            metrics.log(step, {"prompt": p, "text": p + tokenizer.decode(o)}, kind="sample")

    def batches(step: int):
        rows = torch.from_numpy(batch_at(step, recipe.run.seed, train_shards, weights, plan)).to(rt.device)
        micro = [(rows[i * micro_rows:(i + 1) * micro_rows, :-1], rows[i * micro_rows:(i + 1) * micro_rows, 1:])
                 for i in range(accum)]
        return micro, tokens_per_step

    # ---------------------------------------------------------------------------------------- loop
    metrics = Metrics(run_dir, recipe.log, total_steps=total, is_main=main, quiet=quiet,
                      run_name=recipe.run.name, config={"recipe": recipe_text}, description="pretrain",
                      resume_step=progress.step)
    metrics.message(f"llmfs pretrain: {rt.describe()}, {model.num_params():,} parameters, "
                    f"{tokens_per_step:,} tokens per step, steps {progress.step}..{total}")
    plan = BatchPlan(recipe.data.batch_size, seq_len, rt.dist.rank, rt.dist.world_size)
    stage = Stage(batches=batches, loss_fn=loss_fn, lr_at=lambda step: lr_at(step, recipe.optim.lr, total,
                                                                              recipe.schedule),
                  evaluate=evaluate, sample=samples, save=save, flops_per_token=model.flops_per_token(seq_len),
                  compile=recipe.train.compile)
    cadence = Cadence(total, recipe.log.every, recipe.train.eval_every, recipe.train.sample_every,
                      recipe.train.save_every, recipe.train.max_skips)
    try:
        return train_loop(trained, optimizer, rt, stage, cadence, progress, seed=recipe.run.seed,
                          grad_clip=recipe.optim.grad_clip, metrics=metrics, final_dir=run_dir / "final",
                          resumed_from=resume_from, peak=peak_flops(rt) if main else None)
    finally:
        metrics.close()
        teardown(rt)
