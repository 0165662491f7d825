"""`llmfs sft RECIPE`: supervised fine-tuning of a pretrained checkpoint on conversations.

run(recipe) reads top to bottom:
  runtime -> run directory -> parent checkpoint (`init_from`) -> tokenizer with the chat tokens (added, and the
  embedding and head grown, when the pretrained one lacks them) -> conversations rendered through the chat
  template (truncation counted) -> preflight checks -> baseline evaluation -> the shared loop
  (`llmfs/train/loop.py`) with padded or packed batches -> final checkpoint (kind causal_lm, parent recorded).

Loss: cross-entropy on assistant tokens and their end-of-turn token only (`llmfs/tokenizer/chat.py`), averaged
over every target token of the global batch: each micro-batch's summed loss is scaled by
accum * processes / (targets in the global batch), so gradient accumulation and DDP averaging leave exactly
the token mean (every process knows the global batch: its order is a pure function of seed and step).

Evaluation, before training and at each `eval_every`: masked validation loss, then greedy replies to held-out
prompts scored by exact match and token F1 against the gold answers, per task kind, and the share of replies
that stop at `<|end|>` (`llmfs/train/answers.py`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from llmfs import checkpoint as ck
from llmfs.config import dump_toml, invalid, option
from llmfs.errors import DataError, LlmfsError
from llmfs.metrics import LogConfig, Metrics
from llmfs.model.config import ModelConfig
from llmfs.runtime import RunConfig, setup, teardown
from llmfs.train.loop import (Cadence, FinetuneTrainConfig, Stage, check_run_dir, peak_flops, plan_batches,
                              prepare_training, save_checkpoint, train_loop)
from llmfs.train.optim import OptimConfig
from llmfs.train.schedule import ScheduleConfig, check_fits, lr_at


@dataclasses.dataclass(frozen=True)
class SFTDataConfig:
    """The SFT `[data]` section."""

    train: str = "builtin:instructions"  # conversations (`messages`) or Alpaca records: builtin, file, hub name
    valid: str = ""  # "" = held out from `train` (a builtin's valid split, else valid_fraction by content hash)
    valid_fraction: float = option(0.05, gt=0, lt=1, doc="records of a non-builtin train source held out")
    fields: dict[str, str] = dataclasses.field(default_factory=dict)  # canonical -> column, e.g. {messages = "conv"}
    cache_dir: str = ""  # where `datasets` caches hub / table data; "" = RUN/data/hf_cache
    seq_len: int = option(256, ge=8, doc="ids per conversation (longer ones are cut; answerless ones dropped)")
    batch_size: int = option(16, ge=1, doc="conversations per optimizer step, across processes and micro-batches")
    micro_batch_size: int = option(0, ge=0, doc="conversations per forward per process; 0 = no accumulation")
    packing: bool = True  # several conversations per row, attention kept within each
    curriculum: Literal["none", "length", "difficulty"] = "none"  # easy-to-hard first epoch
    difficulty_field: str = "level"  # record field read by curriculum = "difficulty"


@dataclasses.dataclass(frozen=True)
class SFTEvalConfig:
    """The `[eval]` section: scoring greedy replies against gold answers."""

    loss_examples: int = option(500, ge=1, doc="held-out conversations in the validation loss")
    examples: int = option(200, ge=0, doc="held-out conversations answered and scored; 0 = skip")
    max_new_tokens: int = option(64, ge=1)
    batch_size: int = option(32, ge=1)
    baseline: bool = True  # also score the model before the first step


@dataclasses.dataclass(frozen=True)
class SFTRecipe:
    init_from: str  # the pretrained checkpoint (or its run directory); the architecture comes from it
    run: RunConfig = RunConfig(name="sft")
    data: SFTDataConfig = SFTDataConfig()
    optim: OptimConfig = OptimConfig(lr=3e-4, weight_decay=0.0)
    schedule: ScheduleConfig = ScheduleConfig(warmup_steps=20)
    train: FinetuneTrainConfig = FinetuneTrainConfig()
    eval: SFTEvalConfig = SFTEvalConfig()
    log: LogConfig = LogConfig()

    def validate(self) -> None:
        if not self.init_from:
            raise invalid("init_from", "name the pretrained checkpoint, e.g. init_from = \"runs/small\"")
        check_fits(self.schedule, self.train.max_steps)


# ------------------------------------------------------------------------------------------------- pieces


def preflight(tokenizer, model_cfg: ModelConfig, conversations: list, pad_id: int) -> None:
    """Refuse to train on a setup that would fail silently (the issue's list)."""
    from llmfs.tokenizer.chat import END, ROLE_TOKENS, end_id, render, render_prompt

    if end_id(tokenizer) == pad_id:
        raise LlmfsError("the end-of-turn token is also the padding token: its loss would be masked away and "
                         "the model would never learn to stop")
    if tokenizer.vocab_size > model_cfg.vocab_size:
        raise LlmfsError(f"the tokenizer has {tokenizer.vocab_size} ids but the model only {model_cfg.vocab_size}")
    for messages in conversations[:64]:
        full = render(tokenizer, messages).ids
        text = "".join(ROLE_TOKENS[m["role"]] + m["content"] + END for m in messages)
        if tokenizer.decode(full) != text:
            raise LlmfsError("the chat template does not round-trip through the tokenizer (decode(render(x)) "
                             f"differs from the template text for {messages[0]['content'][:40]!r})")
        for k, m in enumerate(messages):
            if m["role"] == "assistant":
                prompt = render_prompt(tokenizer, messages[:k])
                if full[:len(prompt)] != prompt:
                    raise LlmfsError("the prompt rendered alone is not a prefix of the rendered conversation; "
                                     "training and chat would see different ids")


# ---------------------------------------------------------------------------------------------------- run
def run(recipe: SFTRecipe, *, resume: bool = False, force: bool = False, device: str | None = None,
        precision: str | None = None, quiet: bool = False) -> Path:
    """Fine-tune, checkpoint and return the final checkpoint directory."""
    from llmfs.data.records import split_records
    from llmfs.data.sft import (IGNORE, batch_indices, conversation, curriculum_order, pack_batch, pad_batch,
                                render_examples)
    from llmfs.tokenizer.hf import sha256 as tokenizer_sha256
    from llmfs.train.answers import questions, score_answers
    from llmfs.train.init_from import start_from

    rt = setup(recipe.run, device=device, precision=precision)
    main = rt.dist.is_main
    run_dir = Path(recipe.run.out_dir) / recipe.run.name
    recipe_text = dump_toml(recipe)
    resume_from = check_run_dir(run_dir, recipe_text, resume, force)
    micro_rows, accum = plan_batches(recipe.data.batch_size, recipe.data.micro_batch_size, rt.dist.world_size,
                                     unit="conversations")
    # ----------------------------------------------------------------------------- tokenizer and model
    start = start_from(recipe.init_from, run_dir, rt, stage="SFT")
    if main:  # after the parent checkpoint proved readable
        ck.write_text_atomic(run_dir / "recipe.toml", recipe_text)
    parent, tokenizer, tok_dir, model, cfg, resized, pad_id = (start.parent, start.tokenizer, start.tok_dir,
                                                               start.model, start.cfg, start.resized, start.pad_id)
    if recipe.data.seq_len > cfg.max_seq_len and cfg.position == "learned":
        raise LlmfsError(f"data.seq_len {recipe.data.seq_len} is longer than the model's learned positions "
                         f"(max_seq_len {cfg.max_seq_len}); lower data.seq_len")

    # ------------------------------------------------------------------------------------------- data
    cache_dir = Path(recipe.data.cache_dir) if recipe.data.cache_dir else run_dir / "data" / "hf_cache"
    data = recipe.data
    split_args = dict(fields=data.fields, valid_fraction=data.valid_fraction, cache_dir=cache_dir, seed=recipe.run.seed)
    train_records, train_name = split_records(data.train, data.valid, "train", **split_args)
    valid_records, valid_name = split_records(data.train, data.valid, "valid", **split_args)
    if not valid_records:
        raise DataError(f"{valid_name}: no held-out conversations; give data.valid or raise data.valid_fraction")
    seq_len = recipe.data.seq_len
    train_ex, train_cut = render_examples(train_records, tokenizer, seq_len, source=train_name,
                                          difficulty_field=recipe.data.difficulty_field)
    valid_ex, _ = render_examples(valid_records[:recipe.eval.loss_examples], tokenizer, seq_len, source=valid_name)
    valid_convs = [conversation(r, f"{valid_name} record {i}") for i, r in enumerate(valid_records)]
    preflight(tokenizer, cfg, [conversation(r, train_name) for r in train_records[:64]], pad_id)
    qs = questions(valid_convs, valid_records, tokenizer, context=cfg.max_seq_len,
                   max_new_tokens=recipe.eval.max_new_tokens)
    qs = qs[:recipe.eval.examples]
    first_epoch = curriculum_order(train_ex, recipe.data.curriculum, recipe.run.seed)

    # ----------------------------------------------------------------------------- optimizer and resume
    trained, optimizer, progress = prepare_training(model, rt, parallel=recipe.train.parallel, optim=recipe.optim,
                                                    resume_from=resume_from)
    total = recipe.train.max_steps
    tok_sha = tokenizer_sha256(tok_dir)
    world, rank = rt.dist.world_size, rt.dist.rank

    def make_batch(examples):
        x, y, seg, keep = (pack_batch(examples, seq_len, pad_id) if recipe.data.packing
                           else pad_batch(examples, pad_id))
        return x.to(rt.device), y.to(rt.device), None if seg is None else seg.to(rt.device), keep.to(rt.device)

    def batches(step: int):
        idx = batch_indices(step, recipe.data.batch_size, len(train_ex), recipe.run.seed, first_epoch)
        targets = sum(sum(train_ex[i].mask[1:]) for i in idx)  # the global batch's target tokens
        mine = [train_ex[i] for i in idx[rank::world]]
        scale = torch.tensor(accum * world / max(1, targets), device=rt.device)
        micro = [(*make_batch(mine[k * micro_rows:(k + 1) * micro_rows]), scale) for k in range(accum)]
        return micro, sum(len(e.ids) - 1 for e in mine) * world

    def loss_fn(m, x, y, seg, keep, scale):
        out = m(x, segment_ids=seg, token_mask=keep)  # MoE: the pads are not routed
        nll = F.cross_entropy(out.logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE, reduction="sum")
        return nll * scale, out

    @torch.no_grad()
    def evaluate(step: int) -> dict:
        model.eval()
        try:
            nll, n = torch.zeros((), dtype=torch.float64), 0
            for k in range(0, len(valid_ex), micro_rows):
                x, y, seg, keep = make_batch(valid_ex[k:k + micro_rows])
                with rt.autocast():
                    logits = model(x, segment_ids=seg, token_mask=keep).logits
                nll += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE,
                                       reduction="sum").double().cpu()
                n += int((y != IGNORE).sum())
            results = {"val_loss": float(nll) / max(1, n)}
            if qs:
                results.update(score_answers(model, tokenizer, qs, max_new_tokens=recipe.eval.max_new_tokens,
                                             batch_size=recipe.eval.batch_size))
            return results
        finally:
            model.train()

    def save_ckpt(step: int, final: bool) -> Path | None:
        return save_checkpoint(trained, optimizer, rt, run_dir=run_dir, step=step, final=final,
                               keep_last=recipe.train.keep_last, progress=progress, seed=recipe.run.seed,
                               recipe_text=recipe_text, kind="causal_lm", model_config=dataclasses.asdict(cfg),
                               tokenizer_json=tok_dir / "tokenizer.json", parent=parent,
                               extra={"stage": "sft", "step": step, "tokenizer_sha256": tok_sha,
                                      "vocab_resized": resized, "truncation": dataclasses.asdict(train_cut)})

    # ------------------------------------------------------------------------------------------- loop
    metrics = Metrics(run_dir, recipe.log, total_steps=total, is_main=main, quiet=quiet,
                      run_name=recipe.run.name, config={"recipe": recipe_text}, description="sft",
                      resume_step=progress.step)
    metrics.message(f"llmfs sft: {rt.describe()}, {model.num_params():,} parameters, from {parent.path}, "
                    f"steps {progress.step}..{total}")
    metrics.message(f"data: {len(train_ex)} train conversations ({train_cut.cut} cut to {seq_len} ids, "
                    f"{train_cut.dropped} dropped: answer past the cut), {len(valid_ex)} held out, "
                    f"{len(qs)} scored against gold answers")
    if resized:
        metrics.message(f"tokenizer: added {', '.join(resized['added_tokens'])}; embedding grown "
                        f"{resized['from']} -> {resized['to']} rows")
    stage = Stage(batches=batches, loss_fn=loss_fn, evaluate=evaluate, sample=lambda step: None, save=save_ckpt,
                  lr_at=lambda step: lr_at(step, recipe.optim.lr, total, recipe.schedule),
                  flops_per_token=model.flops_per_token(seq_len), compile=recipe.train.compile)
    cadence = Cadence(total, recipe.log.every, recipe.train.eval_every, 0, recipe.train.save_every,
                      recipe.train.max_skips)
    try:
        metrics.log(progress.step, {"train_conversations": len(train_ex), "cut": train_cut.cut,
                                    "dropped": train_cut.dropped}, kind="data")
        if recipe.eval.baseline and resume_from is None:
            metrics.log(0, evaluate(0), kind="eval")
        return train_loop(trained, optimizer, rt, stage, cadence, progress, seed=recipe.run.seed,
                          grad_clip=recipe.optim.grad_clip, metrics=metrics, final_dir=run_dir / "final",
                          resumed_from=resume_from, peak=peak_flops(rt) if main else None)
    finally:
        metrics.close()
        teardown(rt)
