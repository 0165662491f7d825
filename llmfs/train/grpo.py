"""`llmfs grpo RECIPE`: group-relative policy optimisation (Shao et al. 2024) with verifiable rewards.

One step (an "iteration"):
  prompts of the step (a pure function of seed and step) -> G replies each, sampled in one batch with the KV
  cache -> rewards from the `REWARDS` registry, weighted -> group-relative advantages (one per reply, shared by
  its tokens) -> log-probabilities of the sampling policy (and of the frozen reference when kl_coef > 0) ->
  `epochs` passes over shuffled minibatches, each an optimizer update on the clipped objective
  (+ kl_coef * k3 KL to the reference), aggregated per token, per sequence or over a fixed length.
The first minibatch of a step sees ratio 1 exactly; later ones see the policy they moved, which is what the
clip bounds (logged: clip_fraction, approx_kl).

Degenerate settings give the classic baselines: group_size = 1 with scale = "none" and epochs = 1 is REINFORCE
without a baseline (one on-policy update per rollout, so the clip never binds); kl_coef = 0 skips the reference
model entirely.

A reward function that raises on some reply scores it 0; the errors are counted (`reward_errors`) and the first
one is shown once.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Literal

import torch

from llmfs import checkpoint as ck
from llmfs.config import from_dict, invalid, option
from llmfs.metrics import LogConfig, Metrics
from llmfs.model.config import ModelConfig
from llmfs.runtime import RunConfig
from llmfs.train.loop import prepare_training, save_checkpoint
from llmfs.tokenizer.chat import prompt_messages
from llmfs.train.rl_common import (PromptDataConfig, RLTrainConfig, RewardScorer, evaluate_answers, load_reward,
                                   minibatch_passes, prepare_prompts, run_rl_loop, start_rl)
from llmfs.train.optim import OptimConfig
from llmfs.train.schedule import ScheduleConfig, check_fits


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
    """The `[grpo]` section."""

    group_size: int = option(8, ge=1, doc="replies sampled per prompt")
    max_new_tokens: int = option(48, ge=1)
    temperature: float = option(1.0, gt=0)
    top_p: float = option(1.0, gt=0, le=1)
    # REWARDS name -> weight
    rewards: dict[str, float] = dataclasses.field(default_factory=lambda: {"exact_match": 1.0})
    scale: Literal["group", "batch", "none"] = "group"  # advantage = (r - group mean) / (this std + eps)
    epochs: int = option(2, ge=1, doc="passes over each rollout batch")
    minibatch_size: int = option(16, ge=1, doc="replies per optimizer update")
    clip_low: float = option(0.2, gt=0, lt=1)
    clip_high: float = option(0.2, gt=0, doc="DAPO's clip-higher when larger than clip_low")
    kl_coef: float = option(0.0, ge=0, doc="k3 KL to the reference; 0 = no reference model")
    aggregation: Literal["token", "sequence", "fixed_length"] = "token"
    reward_weight: float = option(1.0, ge=0, doc="weight of the reward model's score (when reward_model is set)")

    def validate(self) -> None:
        from llmfs.align.rewards import REWARDS

        for name in self.rewards:
            if name not in REWARDS:
                raise invalid(f"rewards.{name}", f"unknown reward; use one of {', '.join(REWARDS)}")
        if self.group_size == 1 and self.scale == "group":
            raise invalid("scale", "'group' divides by the spread of each prompt's group, and group_size = 1 has "
                          "none; use scale = \"none\" (REINFORCE) or \"batch\", or group_size >= 2")


@dataclasses.dataclass(frozen=True)
class GRPORecipe:
    init_from: str  # the policy to start from: an SFT checkpoint (it needs the chat template)
    reward_model: str = ""  # a `reward` checkpoint whose score is added to the rule rewards; "" = rules only
    run: RunConfig = RunConfig(name="grpo")
    data: PromptDataConfig = PromptDataConfig()
    grpo: GRPOConfig = GRPOConfig()
    optim: OptimConfig = OptimConfig(lr=1e-5, weight_decay=0.0)
    schedule: ScheduleConfig = ScheduleConfig(name="constant", warmup_steps=0)
    train: RLTrainConfig = RLTrainConfig()
    log: LogConfig = LogConfig(every=1)

    def validate(self) -> None:
        if not self.init_from:
            raise invalid("init_from", "name the SFT checkpoint to start from, e.g. init_from = \"runs/sft\"")
        if not self.grpo.rewards and not self.reward_model:
            raise invalid("grpo.rewards", "needs at least one reward, e.g. {exact_match = 1.0}, or a reward_model")
        check_fits(self.schedule, self.train.max_steps)


# ---------------------------------------------------------------------------------------------------- run
def run(recipe: GRPORecipe, *, resume: bool = False, force: bool = False, device: str | None = None,
        precision: str | None = None, quiet: bool = False) -> Path:
    """Optimise the policy, checkpoint and return the final checkpoint directory."""
    from llmfs.align.advantages import group_advantages, zero_variance_groups
    from llmfs.align.kl import kl_k3
    from llmfs.align.masked import masked_mean
    from llmfs.align.policy_loss import AGGREGATIONS, clipped_policy_loss, entropy
    from llmfs.align.rollout import sample, score_logprobs, token_logprobs
    from llmfs.data.sft import batch_indices
    from llmfs.infer.sampling import SamplingConfig
    from llmfs.tokenizer.chat import end_id
    from llmfs.train.step import StepResult

    rt, run_dir, recipe_text, resume_from, model, tokenizer, parent = start_rl(
        recipe, "grpo", device=device, precision=precision, resume=resume, force=force)
    main = rt.dist.is_main
    cfg: ModelConfig = from_dict(ModelConfig, dict(parent.model_config))
    run_dir.mkdir(parents=True, exist_ok=True)
    ck.write_text_atomic(run_dir / "recipe.toml", recipe_text)
    g = recipe.grpo

    # ------------------------------------------------------------------------------------------- data
    cache_dir = Path(recipe.data.cache_dir) if recipe.data.cache_dir else run_dir / "data" / "hf_cache"
    train_prompts, train_records, held_out, train_name = prepare_prompts(
        recipe.data, tokenizer, cfg.max_seq_len - g.max_new_tokens, cache_dir, recipe.run.seed)

    # ---------------------------------------------------------------------------------- models
    end, pad = end_id(tokenizer), tokenizer.eot_id if tokenizer.eot_id is not None else 0
    reference = None
    if g.kl_coef > 0:
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    trained, optimizer, progress = prepare_training(model, rt, parallel="ddp", optim=recipe.optim,
                                                    resume_from=resume_from)
    sampling = SamplingConfig(temperature=g.temperature, top_p=g.top_p, max_new_tokens=g.max_new_tokens)
    scorer = RewardScorer(g.rewards)
    rm = rm_seq_len = None
    if recipe.reward_model:  # raw scores, weighted by reward_weight against the rule rewards
        rm, rm_ckpt = load_reward(recipe.reward_model, parent.tokenizer_path, rt.device)
        rm_seq_len = rm_ckpt.extra.get("seq_len")  # score at the length it was trained at, as `llmfs reward score`
    aggregate = AGGREGATIONS[g.aggregation]
    stats: dict[str, list[float]] = {}

    def loss_fn(m, seqs, keep, mask, adv, old_logp, ref_logp):
        out = m(seqs, token_mask=keep)  # padding is not routed by MoE layers
        logp = token_logprobs(out.logits, seqs, g.temperature)
        pl = clipped_policy_loss(logp, old_logp, adv, mask, clip_low=g.clip_low, clip_high=g.clip_high)
        per_token = pl.per_token
        if reference is not None:
            kl = kl_k3(logp, ref_logp)
            per_token = per_token + g.kl_coef * kl
            stats.setdefault("kl", []).append(float(masked_mean(kl.detach(), mask)))
        with torch.no_grad():  # logged, not optimised: GRPO has no entropy bonus
            stats.setdefault("entropy", []).append(float(entropy(out.logits[:, :-1], mask, g.temperature)))
        stats.setdefault("clip_fraction", []).append(float(pl.clip_fraction))
        stats.setdefault("approx_kl", []).append(float(pl.approx_kl))
        stats.setdefault("ratio_dev", []).append(float(masked_mean((torch.exp(logp - old_logp) - 1).abs().detach(),
                                                                   mask)))
        return aggregate(per_token, mask, g.max_new_tokens), out

    def update(step: int, scaler):
        idx = batch_indices(step, recipe.data.prompts_per_step, len(train_prompts), recipe.run.seed)
        prompts = [train_prompts[i] for i in idx for _ in range(g.group_size)]  # groups are consecutive
        examples = [train_records[i] for i in idx for _ in range(g.group_size)]
        gen = torch.Generator(rt.device).manual_seed(hash((recipe.run.seed, step, 1)) % 2**63)
        t0 = time.perf_counter()
        ro = sample(model, tokenizer, prompts, sampling, end_id=end, pad_id=pad, generator=gen)
        t_rollout = time.perf_counter() - t0
        errors_before = scorer.errors
        rewards = scorer(ro.texts, examples).to(rt.device)
        rm_scores = None
        if rm is not None:
            from llmfs.align.reward import score

            rm_scores = score(rm, tokenizer, [prompt_messages(r["prompt"], "prompt") for r in examples], ro.texts,
                              seq_len=rm_seq_len, batch_size=g.minibatch_size * 4).to(rt.device)
            rewards = rewards + g.reward_weight * rm_scores
        if scorer.errors and not errors_before and main:
            metrics.message(f"a reward function raised (scored 0, counted as reward_errors): {scorer.first_error}")
        adv = group_advantages(rewards, g.group_size, scale=g.scale)[:, None] * ro.mask  # (N, L - 1)
        keep = ro.keep  # (N, L) False at padding: the same routing for the old, reference and new log-probs
        old_logp = score_logprobs(model, ro.sequences, temperature=g.temperature, batch_size=g.minibatch_size,
                                  autocast=rt.autocast, keep=keep)
        ref_logp = (score_logprobs(reference, ro.sequences, temperature=g.temperature, batch_size=g.minibatch_size,
                                   autocast=rt.autocast, keep=keep) if reference is not None else old_logp)
        stats.clear()
        shuffle = torch.Generator().manual_seed(hash((recipe.run.seed, step, 2)) % 2**63)
        t1 = time.perf_counter()
        last, finite, passes = minibatch_passes(trained, optimizer,
                                                (ro.sequences, keep, ro.mask, adv, old_logp, ref_logp),
                                                loss_fn, epochs=g.epochs, minibatch_size=g.minibatch_size,
                                                generator=shuffle, rt=rt, grad_clip=recipe.optim.grad_clip,
                                                scaler=scaler)
        t_optimise = time.perf_counter() - t1
        n = len(prompts)
        seq_tokens = int((ro.sequences != pad).sum())  # prompt and reply tokens each update pass reads
        values = {"reward": float(rewards.mean()), "reward_std": float(rewards.std()) if n > 1 else 0.0,
                  # (a group of one always has zero variance and still carries its reward: not logged)
                  **({"zero_variance_groups": zero_variance_groups(rewards.cpu(), g.group_size)}
                     if g.group_size > 1 else {}),
                  "reply_tokens": float(ro.reply_lengths.mean()), "ended": float(ro.ended.float().mean()),
                  "reward_errors": scorer.errors,
                  "rollout_tok_per_s": float(ro.mask.sum()) / max(t_rollout, 1e-9),  # replies sampled
                  "optimise_tok_per_s": seq_tokens * passes / max(t_optimise, 1e-9)}  # forward + backward
        if rm_scores is not None:
            values["reward_model"] = float(rm_scores.mean())
        values.update({k: sum(v) / len(v) for k, v in stats.items()})
        values["clip_fraction_last_epoch"] = stats["clip_fraction"][-1]
        result = StepResult(loss=last.loss, aux_loss=0.0, grad_norm=last.grad_norm, finite=finite)
        return result, int(ro.mask.sum()) + sum(ro.prompt_lengths), values

    def evaluate(step: int) -> dict:
        return evaluate_answers(model, tokenizer, held_out, max_new_tokens=g.max_new_tokens,
                                batch_size=max(g.minibatch_size, 16))

    def save(step: int, final: bool) -> Path | None:
        return save_checkpoint(trained, optimizer, rt, run_dir=run_dir, step=step, final=final,
                               keep_last=recipe.train.keep_last, progress=progress, seed=recipe.run.seed,
                               recipe_text=recipe_text, kind="causal_lm", model_config=dict(parent.model_config),
                               tokenizer_json=parent.tokenizer_path, parent=parent,
                               extra={"stage": "grpo", "step": step, "reward_errors": scorer.errors})

    # ------------------------------------------------------------------------------------------- loop
    total = recipe.train.max_steps
    metrics = Metrics(run_dir, recipe.log, total_steps=total, is_main=main, quiet=quiet,
                      run_name=recipe.run.name, config={"recipe": recipe_text}, description="grpo",
                      resume_step=progress.step)
    metrics.message(f"llmfs grpo: {rt.describe()}, {model.num_params():,} parameters, from {parent.path}; "
                    f"{len(train_prompts)} train prompts ({train_name}), {len(held_out)} held out; "
                    f"{recipe.data.prompts_per_step} prompts x {g.group_size} replies per step")
    return run_rl_loop(recipe, rt, trained, optimizer, progress, metrics, update=update, evaluate=evaluate,
                       save=save, resume_from=resume_from, run_dir=run_dir)
