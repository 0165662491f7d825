"""`llmfs reward train RECIPE`: a reward model trained on preference pairs, from an SFT (or pretrained) checkpoint.

run(recipe) reads top to bottom:
  runtime -> run directory -> parent checkpoint (`init_from`, a causal_lm) -> tokenizer with the chat tokens
  (added, and the embedding grown, when the parent lacks them) -> `RewardModel` = the parent's Transformer
  without lm_head + a fresh scalar head (`llmfs/align/reward.py`) -> pairs rendered and truncated
  (`llmfs/data/preference.py`, drops counted) -> baseline evaluation -> the shared loop (`llmfs/train/loop.py`)
  -> final checkpoint (kind "reward", parent recorded, held-out reward mean / std and metrics in `extra`).

Loss (`[reward]`, `llmfs/align/reward_losses.py`): Bradley-Terry or margin ranking on the chosen and rejected
rewards of each pair, plus optional reward centering and the optional next-token loss of the chosen replies
(`lm_coef`, through the tied embedding, or a frozen copy of an untied parent's lm_head that is never saved); the
mean over the pairs of each micro-batch, so the equal-sized micro-batches of accumulation and DDP average to the
mean over the global batch.

Evaluation on held-out pairs (before training, at each `eval_every`, at the end): the loss, pairwise accuracy
(a tie counts as wrong), mean margin r_c - r_r, accuracy per `defect` kind when records have one, the Pearson
correlation of reward with reply length in tokens over both sides of every pair (a warning when
|r| > `reward.length_warning`: the model may be rewarding length instead of quality), and the mean and standard
deviation of the rewards (stored for PPO to normalise).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Literal

import torch

from llmfs import checkpoint as ck
from llmfs.config import dump_toml, invalid, option
from llmfs.errors import DataError, LlmfsError
from llmfs.metrics import LogConfig, Metrics
from llmfs.runtime import RunConfig, setup, teardown
from llmfs.train.loop import (Cadence, FinetuneTrainConfig, Stage, check_run_dir, peak_flops, plan_batches,
                              prepare_training, save_checkpoint, train_loop)
from llmfs.train.optim import OptimConfig
from llmfs.train.schedule import ScheduleConfig, check_fits, lr_at


@dataclasses.dataclass(frozen=True)
class RewardDataConfig:
    """The reward `[data]` section."""

    train: str = "builtin:preferences"  # prompt, chosen, rejected records: builtin, .jsonl / .parquet, hub name
    valid: str = ""  # "" = held out from `train` (a builtin's valid split, else valid_fraction by content hash)
    valid_fraction: float = option(0.05, gt=0, lt=1, doc="records of a non-builtin train source held out")
    fields: dict[str, str] = dataclasses.field(default_factory=dict)  # canonical -> column, {chosen = "better"}
    cache_dir: str = ""  # where `datasets` caches hub / table data; "" = RUN/data/hf_cache
    seq_len: int = option(128, ge=4, doc="ids per prompt + reply; longer ones keep their end")
    batch_size: int = option(16, ge=1, doc="pairs per optimizer step, across processes and micro-batches")
    micro_batch_size: int = option(0, ge=0, doc="pairs per forward per process; 0 = no accumulation")


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    """The `[reward]` section: the loss and the length-bias warning."""

    loss: Literal["bradley_terry", "margin"] = "bradley_terry"
    margin: float = option(1.0, ge=0, doc="the margin of loss = \"margin\" (when margin_field is empty)")
    margin_field: str = ""  # a numeric record field giving each pair's margin (loss = "margin")
    center_coef: float = option(0.0, ge=0, doc="reward centering coef * mean((r_c + r_r)^2); 0 = off")
    lm_coef: float = option(0.0, ge=0, doc="+ coef * next-token loss on the chosen replies (keeps the parent's "
                            "knowledge; Yang et al. 2024); 0 = off")
    likelihood_coef: float = option(0.0, ge=0, doc="reward = head + coef * the reply's mean token log-probability "
                                    "under the backbone's LM head (SimPO's implicit reward); 0 = the head alone")
    length_warning: float = option(0.3, gt=0, le=1, doc="warn when |corr(reward, reply tokens)| exceeds it")

    def validate(self) -> None:
        if self.margin_field and self.loss != "margin":
            raise invalid("margin_field", "only applies to loss = \"margin\"; set loss = \"margin\" or remove it")


@dataclasses.dataclass(frozen=True)
class RewardEvalConfig:
    """The reward `[eval]` section."""

    pairs: int = option(500, ge=1, doc="held-out pairs scored at each evaluation")
    baseline: bool = True  # also evaluate before the first step


@dataclasses.dataclass(frozen=True)
class RewardRecipe:
    init_from: str  # the SFT (or pretrained) causal_lm checkpoint or run directory; the architecture comes from it
    run: RunConfig = RunConfig(name="reward")
    data: RewardDataConfig = RewardDataConfig()
    optim: OptimConfig = OptimConfig(lr=1e-4, weight_decay=0.0)
    schedule: ScheduleConfig = ScheduleConfig(warmup_steps=20)
    train: FinetuneTrainConfig = FinetuneTrainConfig()
    reward: RewardConfig = RewardConfig()
    eval: RewardEvalConfig = RewardEvalConfig()
    log: LogConfig = LogConfig()

    def validate(self) -> None:
        if not self.init_from:
            raise invalid("init_from", "name the SFT checkpoint, e.g. init_from = \"runs/sft\"")
        if self.train.parallel == "fsdp":
            raise invalid("train.parallel", "fsdp is not wired for the reward model yet; use \"ddp\"")
        check_fits(self.schedule, self.train.max_steps)


# ------------------------------------------------------------------------------------------------- metrics
def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation of two (N,) tensors; 0 when either is constant."""
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    denom = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum()) / denom if denom > 0 else 0.0


def pair_metrics(chosen: torch.Tensor, rejected: torch.Tensor, defects: list[str], lengths: torch.Tensor) -> dict:
    """Held-out metrics from rewards chosen, rejected (N,), each pair's defect, and reply lengths (2N,) in the
    order [chosen..., rejected...]."""
    wins = (chosen > rejected).double()  # a tie counts as wrong
    rewards = torch.cat([chosen, rejected]).double()  # (2N,)
    out = {"accuracy": float(wins.mean()), "margin": float((chosen - rejected).double().mean()),
           "reward_mean": float(rewards.mean()), "reward_std": float(rewards.std(correction=0)),
           "length_corr": pearson(rewards, lengths)}
    for kind in sorted(set(defects) - {""}):
        pick = torch.tensor([d == kind for d in defects])
        out[f"accuracy/{kind}"] = float(wins[pick].mean())
    return out


# ---------------------------------------------------------------------------------------------------- run
def run(recipe: RewardRecipe, *, resume: bool = False, force: bool = False, device: str | None = None,
        precision: str | None = None, quiet: bool = False) -> Path:
    """Train a reward model, checkpoint it and return the final checkpoint directory."""
    from llmfs.align.reward import RewardModel
    from llmfs.align.reward_losses import pairwise_loss, reply_lm_loss
    from llmfs.data.preference import (FIELDS, build_pairs, chosen_reply_targets, pair_batch, pair_starts,
                                       reply_start)
    from llmfs.data.records import split_records
    from llmfs.data.sft import batch_indices
    from llmfs.tokenizer.hf import sha256 as tokenizer_sha256
    from llmfs.train.init_from import start_from

    rt = setup(recipe.run, device=device, precision=precision)
    main = rt.dist.is_main
    run_dir = Path(recipe.run.out_dir) / recipe.run.name
    recipe_text = dump_toml(recipe)
    resume_from = check_run_dir(run_dir, recipe_text, resume, force)
    micro_pairs, accum = plan_batches(recipe.data.batch_size, recipe.data.micro_batch_size, rt.dist.world_size,
                                      unit="pairs")
    # ----------------------------------------------------------------------------- tokenizer and model
    start = start_from(recipe.init_from, run_dir, rt, stage="a reward model")
    if main:  # after the parent checkpoint proved readable
        ck.write_text_atomic(run_dir / "recipe.toml", recipe_text)
    parent, tokenizer, tok_dir, backbone, cfg, resized = (start.parent, start.tokenizer, start.tok_dir, start.model,
                                                          start.cfg, start.resized)
    seq_len = recipe.data.seq_len
    if seq_len > cfg.max_seq_len:
        raise LlmfsError(f"data.seq_len {seq_len} is longer than the model's context (max_seq_len "
                         f"{cfg.max_seq_len}); lower data.seq_len")
    # The next-token logits of lm_coef: the tied embedding (trained with the backbone), or a frozen copy of an
    # untied parent's lm_head (not part of the reward model, so neither saved nor trained; a resume reads it again).
    # With likelihood_coef > 0 the reward model keeps an untied head itself (trained and saved), and lm_coef uses it.
    likelihood = recipe.reward.likelihood_coef
    untied_head = (backbone.lm_head.weight.detach().clone()  # RewardModel drops lm_head: copy it first
                   if recipe.reward.lm_coef > 0 and not cfg.tie_embeddings and not likelihood else None)
    model = RewardModel(cfg, backbone=backbone, generator=torch.Generator().manual_seed(recipe.run.seed),
                        likelihood_coef=likelihood)
    model = model.to(rt.device)
    lm_weight = None
    if recipe.reward.lm_coef > 0:
        lm_weight = model.vocab_weight() if untied_head is None else untied_head.to(rt.device)
    pad_id = start.pad_id

    # ------------------------------------------------------------------------------------------- data
    data = recipe.data
    cache_dir = Path(data.cache_dir) if data.cache_dir else run_dir / "data" / "hf_cache"
    split_args = dict(required=FIELDS, fields=data.fields, valid_fraction=data.valid_fraction, cache_dir=cache_dir,
                      seed=recipe.run.seed)
    train_records, train_name = split_records(data.train, data.valid, "train", **split_args)
    valid_records, valid_name = split_records(data.train, data.valid, "valid", **split_args)
    if not valid_records:
        raise DataError(f"{valid_name}: no held-out pairs; give data.valid or raise data.valid_fraction")
    margin_field = recipe.reward.margin_field
    train_pairs, train_counts = build_pairs(train_records, tokenizer, seq_len, source=train_name,
                                            margin_field=margin_field)
    valid_pairs, valid_counts = build_pairs(valid_records[:recipe.eval.pairs], tokenizer, seq_len,
                                            source=valid_name, margin_field=margin_field)

    # ----------------------------------------------------------------------------- optimizer and resume
    trained, optimizer, progress = prepare_training(model, rt, parallel=recipe.train.parallel, optim=recipe.optim,
                                                    resume_from=resume_from)
    total = recipe.train.max_steps
    tok_sha = tokenizer_sha256(tok_dir)
    world, rank = rt.dist.world_size, rt.dist.rank
    rw = recipe.reward

    def batches(step: int):
        idx = batch_indices(step, data.batch_size, len(train_pairs), recipe.run.seed)
        mine = [train_pairs[i] for i in idx[rank::world]]
        # lm_coef's term is a mean over the reply tokens of the whole global batch (as SFT's loss): each
        # micro-batch's summed loss times accum * world / (reply tokens of the global batch), so micro-batches
        # with more reply tokens weigh more and accumulation gives the same gradient as one big batch
        n_targets = sum(len(train_pairs[i].chosen) - reply_start(len(train_pairs[i].chosen),
                                                                   train_pairs[i].chosen_tokens) for i in idx)
        lm_scale = torch.tensor(accum * world / max(1, n_targets))
        micro = []
        for k in range(accum):
            pairs = mine[k * micro_pairs:(k + 1) * micro_pairs]
            ids, index, margins = pair_batch(pairs, pad_id)
            targets = chosen_reply_targets(pairs, ids.shape[1]) if lm_weight is not None else None
            micro.append(tuple(t.to(rt.device) if t is not None else None
                               for t in (ids, index, pair_starts(pairs), margins, targets, lm_scale)))
        return micro, sum(len(p.chosen) + len(p.rejected) for p in mine) * world

    def loss_fn(m, ids, index, start, margins, targets, lm_scale):
        rewards, out = m(ids, index, start=start)  # (2B,): chosen rows, then rejected rows
        chosen, rejected = rewards.chunk(2)
        loss = pairwise_loss(chosen, rejected, loss=rw.loss, margin=margins if margin_field else rw.margin,
                             center_coef=rw.center_coef)
        if targets is not None:  # the chosen rows' next-token loss on their reply ids
            nll = reply_lm_loss(out.hidden[:len(chosen)], lm_weight, targets, reduction="sum")
            loss = loss + rw.lm_coef * nll * lm_scale
        return loss, out

    last_eval: dict = {}  # {"step", "metrics"} of the latest evaluation, for the checkpoint's extra
    if resume_from is not None:  # carried over, so step checkpoints saved before the next evaluation keep them
        saved = ck.open_checkpoint(resume_from).extra
        if saved.get("eval"):
            last_eval.update(step=saved.get("eval_step"), metrics=dict(saved["eval"]))

    @torch.no_grad()
    def evaluate(step: int) -> dict:
        model.eval()
        try:
            chosen, rejected = [], []
            for k in range(0, len(valid_pairs), micro_pairs):
                ids, index, _ = pair_batch(valid_pairs[k:k + micro_pairs], pad_id)
                start = pair_starts(valid_pairs[k:k + micro_pairs]).to(rt.device)
                with rt.autocast():
                    rewards, _ = model(ids.to(rt.device), index.to(rt.device), start=start)
                c, r = rewards.float().cpu().chunk(2)
                chosen.append(c)
                rejected.append(r)
            c, r = torch.cat(chosen), torch.cat(rejected)
            margins = torch.tensor([p.margin for p in valid_pairs]) if margin_field else rw.margin
            lengths = torch.tensor([p.chosen_tokens for p in valid_pairs] + [p.rejected_tokens for p in valid_pairs])
            results = {"val_loss": float(pairwise_loss(c, r, loss=rw.loss, margin=margins,
                                                       center_coef=rw.center_coef)),
                       **pair_metrics(c, r, [p.defect for p in valid_pairs], lengths)}
            if abs(results["length_corr"]) > rw.length_warning:
                metrics.message(f"warning: step {step}: held-out rewards correlate with reply length "
                                f"(r = {results['length_corr']:+.2f}, |r| > reward.length_warning "
                                f"{rw.length_warning}); the model may be rewarding length, not quality")
            last_eval.update(step=step, metrics=results)
            return results
        finally:
            model.train()

    def save_ckpt(step: int, final: bool) -> Path | None:
        held_out = dict(last_eval.get("metrics", {}))
        return save_checkpoint(
            trained, optimizer, rt, run_dir=run_dir, step=step, final=final, keep_last=recipe.train.keep_last,
            progress=progress, seed=recipe.run.seed, recipe_text=recipe_text, kind="reward",
            model_config=dataclasses.asdict(cfg), tokenizer_json=tok_dir / "tokenizer.json", parent=parent,
            extra={"stage": "reward", "step": step, "tokenizer_sha256": tok_sha, "vocab_resized": resized,
                   "head": "head.score on the final hidden state of the last id (<|end|>)"
                           + (" + likelihood_coef * the reply's mean token log-probability" if likelihood else ""),
                   "likelihood_coef": likelihood,
                   "seq_len": seq_len, "reward_mean": held_out.get("reward_mean"),
                   "reward_std": held_out.get("reward_std"), "eval": held_out, "eval_step": last_eval.get("step"),
                   "data": {"train": dataclasses.asdict(train_counts), "valid": dataclasses.asdict(valid_counts)}})

    # ------------------------------------------------------------------------------------------- loop
    metrics = Metrics(run_dir, recipe.log, total_steps=total, is_main=main, quiet=quiet,
                      run_name=recipe.run.name, config={"recipe": recipe_text}, description="reward",
                      resume_step=progress.step)
    metrics.message(f"llmfs reward: {rt.describe()}, {model.num_params():,} parameters, from {parent.path}, "
                    f"steps {progress.step}..{total}")
    dropped = train_counts.empty + train_counts.identical + train_counts.identical_after_cut
    metrics.message(f"data: {len(train_pairs)} train pairs ({train_counts.cut} cut to their last {seq_len} ids, "
                    f"{dropped} dropped: {train_counts.empty} empty, {train_counts.identical} chosen == rejected, "
                    f"{train_counts.identical_after_cut} identical after the cut), {len(valid_pairs)} held out")
    if resized:
        metrics.message(f"tokenizer: added {', '.join(resized['added_tokens'])}; embedding grown "
                        f"{resized['from']} -> {resized['to']} rows")
    # 6 * d_model * vocab: the Transformer's estimate counts an lm_head matmul the reward model runs only for its
    # likelihood term
    flops = model.backbone.flops_per_token(seq_len) - (0 if likelihood else 6 * cfg.d_model * cfg.vocab_size)
    stage = Stage(batches=batches, loss_fn=loss_fn, evaluate=evaluate, sample=lambda step: None, save=save_ckpt,
                  lr_at=lambda step: lr_at(step, recipe.optim.lr, total, recipe.schedule), flops_per_token=flops,
                  compile=recipe.train.compile)
    cadence = Cadence(total, recipe.log.every, recipe.train.eval_every, 0, recipe.train.save_every,
                      recipe.train.max_skips)
    try:
        metrics.log(progress.step, {"train_pairs": len(train_pairs), "valid_pairs": len(valid_pairs),
                                    **{f"train_{k}": v for k, v in dataclasses.asdict(train_counts).items()},
                                    **{f"valid_{k}": v for k, v in dataclasses.asdict(valid_counts).items()}},
                    kind="data")
        if recipe.eval.baseline and resume_from is None:
            metrics.log(0, evaluate(0), kind="eval")
        return train_loop(trained, optimizer, rt, stage, cadence, progress, seed=recipe.run.seed,
                          grad_clip=recipe.optim.grad_clip, metrics=metrics, final_dir=run_dir / "final",
                          resumed_from=resume_from, peak=peak_flops(rt) if main else None)
    finally:
        metrics.close()
        teardown(rt)
