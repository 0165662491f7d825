"""`llmfs ppo RECIPE`: RLHF with PPO (Schulman et al. 2017; Ziegler et al. 2019; Ouyang et al. 2022).

One step (an "iteration"):
  prompts of the step (a pure function of seed and step) -> one reply each, sampled in one batch with the KV
  cache -> sequence score = reward model (normalised by running statistics that start from the reward
  checkpoint's held-out mean / std) + weighted rule rewards + `no_end_penalty` for replies that never reached
  `<|end|>` -> log-probabilities of the sampling policy and the frozen reference, values of the critic
  (`llmfs/align/actor_critic.py`) -> per-token rewards: -beta * KL estimate (k1 or k3) on every reply token, plus
  the score on the last one -> GAE (gamma, lambda) -> advantages whitened over the reply tokens -> `epochs` passes
  over shuffled minibatches: clipped policy loss + vf_coef * clipped value loss - entropy_coef * entropy; the
  passes stop early once the approximate KL of an epoch exceeds `max_approx_kl` -> the adaptive KL coefficient
  moves toward `kl_target`.
Later minibatches see ratios away from 1, so the clip binds (logged: clip_fraction, approx_kl).
"""

from __future__ import annotations

import copy
import dataclasses
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
from llmfs.train.optim import OptimConfig
from llmfs.train.rl_common import (PromptDataConfig, RLTrainConfig, RewardScorer, evaluate_answers, load_reward,
                                   minibatch_passes, prepare_prompts, run_rl_loop, start_rl)
from llmfs.train.schedule import ScheduleConfig, check_fits


SAMPLE_ROWS = 4  # held-out replies logged at each evaluation


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """The `[ppo]` section."""

    max_new_tokens: int = option(48, ge=1)
    temperature: float = option(1.0, gt=0)
    reward_weight: float = option(1.0, ge=0, doc="weight of the (normalised) reward model score")
    rewards: dict[str, float] = dataclasses.field(default_factory=dict)  # rule rewards: REWARDS name -> weight
    normalize_rewards: bool = True
    no_end_penalty: float = option(-1.0, doc="added to the score of a reply that never emitted <|end|>")
    kl_coef: float = option(0.05, ge=0, doc="beta, the initial KL penalty coefficient")
    kl_estimator: Literal["k1", "k3"] = "k1"
    kl_target: float = option(0.0, ge=0, doc="adaptive beta toward this KL per reply; 0 = fixed beta")
    kl_horizon: int = option(10_000, ge=1)
    gamma: float = option(1.0, ge=0, le=1)
    lam: float = option(0.95, ge=0, le=1)
    whiten_advantages: bool = True
    value_model: Literal["shared", "separate", "reward"] = "shared"  # llmfs/align/actor_critic.py
    epochs: int = option(4, ge=1)
    minibatch_size: int = option(8, ge=1)
    clip: float = option(0.2, gt=0, lt=1)
    value_clip: float = option(0.2, gt=0)
    vf_coef: float = option(0.1, ge=0)
    entropy_coef: float = option(0.0, ge=0)
    max_approx_kl: float = option(0.0, ge=0, doc="stop an iteration's epochs past this approximate KL; 0 = never")

    def validate(self) -> None:
        from llmfs.align.rewards import REWARDS

        for name in self.rewards:
            if name not in REWARDS:
                raise invalid(f"rewards.{name}", f"unknown reward; use one of {', '.join(REWARDS)}")


@dataclasses.dataclass(frozen=True)
class PPORecipe:
    init_from: str  # the SFT policy
    reward_model: str = ""  # a `reward` checkpoint; "" = rule rewards only
    run: RunConfig = RunConfig(name="ppo")
    data: PromptDataConfig = PromptDataConfig(train="builtin:preferences?n=2000")
    ppo: PPOConfig = PPOConfig()
    optim: OptimConfig = OptimConfig(lr=1e-5, weight_decay=0.0)
    schedule: ScheduleConfig = ScheduleConfig(name="constant", warmup_steps=0)
    train: RLTrainConfig = RLTrainConfig()
    log: LogConfig = LogConfig(every=1)

    def validate(self) -> None:
        if not self.init_from:
            raise invalid("init_from", "name the SFT checkpoint to start from, e.g. init_from = \"runs/sft\"")
        if not self.reward_model and not self.ppo.rewards:
            raise invalid("reward_model", "give a reward checkpoint, or rule rewards in [ppo] rewards")
        if self.ppo.value_model == "reward" and not self.reward_model:
            raise invalid("ppo.value_model", "\"reward\" copies the reward model into the critic; give reward_model "
                          "or use \"shared\" / \"separate\"")
        if self.reward_model and self.ppo.reward_weight == 0 and not self.ppo.rewards:
            raise invalid("ppo.reward_weight", "is 0 and there are no rule rewards: nothing to optimise")
        check_fits(self.schedule, self.train.max_steps)


# ---------------------------------------------------------------------------------------------------- run
def run(recipe: PPORecipe, *, resume: bool = False, force: bool = False, device: str | None = None,
        precision: str | None = None, quiet: bool = False) -> Path:
    """Optimise the policy with PPO, checkpoint and return the final checkpoint directory."""
    from llmfs.align.actor_critic import VALUE_FILE, ActorCritic
    from llmfs.align.advantages import gae
    from llmfs.align.kl import KL_ESTIMATORS, AdaptiveKL
    from llmfs.align.masked import masked_mean, masked_var, masked_whiten
    from llmfs.align.policy_loss import clipped_policy_loss, clipped_value_loss, entropy
    from llmfs.align.rollout import sample, token_logprobs
    from llmfs.align.running_stats import RunningStats
    from llmfs.data.sft import batch_indices
    from llmfs.infer.sampling import SamplingConfig
    from llmfs.tokenizer.chat import end_id
    from llmfs.train.step import StepResult

    rt, run_dir, recipe_text, resume_from, policy, tokenizer, parent = start_rl(
        recipe, "ppo", device=device, precision=precision, resume=resume, force=force)
    rm = rm_ckpt = rm_seq_len = None
    if recipe.reward_model:
        rm, rm_ckpt = load_reward(recipe.reward_model, parent.tokenizer_path, rt.device)
        rm_seq_len = rm_ckpt.extra.get("seq_len")  # score at the length it was trained at, as `llmfs reward score`
    cfg: ModelConfig = from_dict(ModelConfig, dict(parent.model_config))
    p = recipe.ppo
    cache_dir = Path(recipe.data.cache_dir) if recipe.data.cache_dir else run_dir / "data" / "hf_cache"
    train_prompts, train_records, held_out, train_name = prepare_prompts(
        recipe.data, tokenizer, cfg.max_seq_len - p.max_new_tokens, cache_dir, recipe.run.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    ck.write_text_atomic(run_dir / "recipe.toml", recipe_text)

    # --------------------------------------------------------------------------------------------- models
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    model = ActorCritic(policy, p.value_model, generator=torch.Generator().manual_seed(recipe.run.seed),
                        reward_model=rm).to(rt.device).eval()  # no dropout in the policy or the critic (load_policy)

    def read_state(ckpt: ck.Checkpoint) -> dict:
        state = {f"policy.{k}": v for k, v in ck.read_weights(ckpt, policy).items()}
        return {**state, **ck.read_weights(ckpt, model.value_part(), file=VALUE_FILE)}

    trained, optimizer, progress = prepare_training(model, rt, parallel="ddp", optim=recipe.optim,
                                                    resume_from=resume_from, read_state=read_state)
    kl_ctl = AdaptiveKL(p.kl_coef, p.kl_target or None, p.kl_horizon)
    stats = RunningStats()
    # the reward model's held-out statistics (null in a checkpoint saved before any evaluation: start empty)
    if rm_ckpt is not None and rm_ckpt.extra.get("reward_mean") is not None:
        stats = RunningStats(float(rm_ckpt.extra["reward_mean"]), float(rm_ckpt.extra["reward_std"]) ** 2, 100.0)
    if resume_from is not None:  # the coefficient and the running statistics continue where the run stopped
        saved = ck.open_checkpoint(resume_from).extra
        kl_ctl.beta = saved["kl_coef"]
        stats = RunningStats(**saved["reward_stats"])
    kl_estimate = KL_ESTIMATORS[p.kl_estimator]
    sampling = SamplingConfig(temperature=p.temperature, max_new_tokens=p.max_new_tokens)
    scorer = RewardScorer(p.rewards) if p.rewards else None
    end, pad = end_id(tokenizer), tokenizer.eot_id if tokenizer.eot_id is not None else 0
    step_stats: dict[str, list[float]] = {}

    def scores(ro, records) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw reward-model scores, the sequence scores PPO optimises), both (N,)."""
        total = torch.zeros(len(ro.texts))
        raw = torch.zeros(len(ro.texts))
        if rm is not None:
            from llmfs.align.reward import score

            prompts = [prompt_messages(r["prompt"], "prompt") for r in records]
            raw = score(rm, tokenizer, prompts, ro.texts, seq_len=rm_seq_len, batch_size=p.minibatch_size * 4)
            if p.normalize_rewards:
                stats.update(raw)
                total = total + p.reward_weight * stats.normalise(raw)
            else:
                total = total + p.reward_weight * raw
        if scorer is not None:
            total = total + scorer(ro.texts, list(records))
        total = total + p.no_end_penalty * (~ro.ended.cpu()).float()
        return raw, total

    @torch.no_grad()
    def evaluate_rollout(sequences: torch.Tensor,
                         keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(policy logprobs, reference logprobs, values) of a rollout, in minibatches, no gradients (the policy
        is in eval mode throughout the stage: `load_policy`); `keep`: the rollout's, padding is not routed."""
        lp, ref, val = [], [], []
        for k in range(0, sequences.shape[0], p.minibatch_size):
            rows, rows_keep = sequences[k:k + p.minibatch_size], keep[k:k + p.minibatch_size]
            with rt.autocast():
                out, values = model(rows, token_mask=rows_keep)
                ref_logits = reference(rows, token_mask=rows_keep).logits
            lp.append(token_logprobs(out.logits, rows, p.temperature))
            ref.append(token_logprobs(ref_logits, rows, p.temperature))
            val.append(values[:, :-1])
        return torch.cat(lp), torch.cat(ref), torch.cat(val)

    def loss_fn(m, seqs, keep, mask, adv, returns, old_logp, old_values):
        out, values = m(seqs, token_mask=keep)
        logp = token_logprobs(out.logits, seqs, p.temperature)
        pl = clipped_policy_loss(logp, old_logp, adv, mask, clip_low=p.clip)
        vf, vf_clip = clipped_value_loss(values[:, :-1], old_values, returns, mask, clip=p.value_clip)
        ent = entropy(out.logits[:, :-1], mask, p.temperature)
        step_stats.setdefault("clip_fraction", []).append(float(pl.clip_fraction))
        step_stats.setdefault("approx_kl", []).append(float(pl.approx_kl))
        step_stats.setdefault("value_loss", []).append(float(vf.detach()))
        step_stats.setdefault("value_clip_fraction", []).append(float(vf_clip))
        step_stats.setdefault("entropy", []).append(float(ent.detach()))
        step_stats.setdefault("ratio_dev", []).append(
            float(masked_mean((torch.exp(logp - old_logp) - 1).abs().detach(), mask)))
        return masked_mean(pl.per_token, mask) + p.vf_coef * vf - p.entropy_coef * ent, out

    def update(step: int, scaler):
        idx = batch_indices(step, recipe.data.prompts_per_step, len(train_prompts), recipe.run.seed)
        prompts, records = [train_prompts[i] for i in idx], [train_records[i] for i in idx]
        gen = torch.Generator(rt.device).manual_seed(hash((recipe.run.seed, step, 1)) % 2**63)
        ro = sample(policy, tokenizer, prompts, sampling, end_id=end, pad_id=pad, generator=gen)
        raw, score_seq = scores(ro, records)
        old_logp, ref_logp, old_values = evaluate_rollout(ro.sequences, ro.keep)
        mask = ro.mask
        kl = kl_estimate(old_logp, ref_logp) * mask  # (N, L - 1)
        rewards = -kl_ctl.beta * kl
        last = (mask * torch.arange(mask.shape[1], device=mask.device)).argmax(1)  # each reply's last token
        rewards[torch.arange(len(prompts), device=mask.device), last] += score_seq.to(mask.device)
        adv, returns = gae(rewards, old_values, mask, gamma=p.gamma, lam=p.lam)
        if p.whiten_advantages:
            adv = masked_whiten(adv, mask)
        step_stats.clear()
        shuffle = torch.Generator().manual_seed(hash((recipe.run.seed, step, 2)) % 2**63)

        sizes = [min(p.minibatch_size, len(prompts) - k) for k in range(0, len(prompts), p.minibatch_size)]

        def too_far() -> bool:  # after each epoch: stop once its approximate KL (per reply) passed the bound
            epoch_kl = step_stats["approx_kl"][-len(sizes):]  # one per minibatch of this pass
            mean_kl = sum(kl_mb * n for kl_mb, n in zip(epoch_kl, sizes)) / sum(sizes)
            return p.max_approx_kl > 0 and mean_kl > p.max_approx_kl

        last_result, finite, epochs = minibatch_passes(
            trained, optimizer, (ro.sequences, ro.keep, mask, adv, returns, old_logp, old_values), loss_fn,
            epochs=p.epochs, minibatch_size=p.minibatch_size, generator=shuffle, rt=rt,
            grad_clip=recipe.optim.grad_clip, scaler=scaler, stop_after_epoch=too_far)
        kl_per_reply = float(kl.sum(1).mean())
        beta = kl_ctl.beta
        kl_ctl.update(kl_per_reply, len(prompts))
        explained = 1 - float(masked_var(returns - old_values, mask) / (masked_var(returns, mask) + 1e-8))
        values = {"reward": float(score_seq.mean()), "kl": kl_per_reply, "kl_coef": beta,
                  "reply_tokens": float(ro.reply_lengths.mean()), "ended": float(ro.ended.float().mean()),
                  "explained_variance": explained, "epochs": epochs}
        if rm is not None:
            values["reward_model"] = float(raw.mean())
        if scorer is not None:
            values["reward_errors"] = scorer.errors
        values.update({k: sum(v) / len(v) for k, v in step_stats.items()})
        values["clip_fraction_last_epoch"] = step_stats["clip_fraction"][-1]
        result = StepResult(loss=last_result.loss, aux_loss=0.0, grad_norm=last_result.grad_norm, finite=finite)
        return result, int(mask.sum()) + sum(ro.prompt_lengths), values

    def evaluate(step: int) -> dict:
        """Samples on held-out prompts (the rollout temperature, a fixed seed): mean and std of the raw
        reward-model score, and KL to the reference per reply."""
        if not held_out:
            return {}
        gen = torch.Generator(rt.device).manual_seed(recipe.run.seed)
        ro = sample(policy, tokenizer, [q.prompt for q in held_out], sampling, end_id=end, pad_id=pad, generator=gen)
        lp, ref, _ = evaluate_rollout(ro.sequences, ro.keep)
        result = {"eval_kl": float((KL_ESTIMATORS["k1"](lp, ref) * ro.mask).sum(1).mean()),
                  "eval_reply_tokens": float(ro.reply_lengths.mean())}
        table = [{"prompt": tokenizer.decode(q.prompt), "reply": text} for q, text in zip(held_out, ro.texts)]
        if rm is not None:
            from llmfs.align.reward import score

            rm_scores = score(rm, tokenizer, [prompt_messages(q.example["prompt"], "prompt") for q in held_out],
                              ro.texts, seq_len=rm_seq_len)
            result["eval_reward_model"] = float(rm_scores.mean())
            # the spread of the scores over these samples: the unit in which Ziegler et al. (2019) normalise a
            # reward model (mean 0, std 1 on the initial policy's samples), so step 0's is the SFT model's
            result["eval_reward_model_std"] = float(rm_scores.std()) if len(rm_scores) > 1 else 0.0
            for row, r in zip(table, rm_scores.tolist()):
                row["reward_model"] = r
        if scorer is not None:
            rule = RewardScorer(p.rewards)(ro.texts, [q.example for q in held_out])
            result["eval_reward"] = float(rule.mean())
            for row, r in zip(table, rule.tolist()):
                row["reward"] = r
        if all("answer" in q.example for q in held_out):  # a verifiable task: greedy accuracy, as GRPO reports
            result.update(evaluate_answers(policy, tokenizer, held_out, max_new_tokens=p.max_new_tokens,
                                           batch_size=max(p.minibatch_size, 16)))
        for row in table[:SAMPLE_ROWS]:  # a small table of sample replies: one "sample" event per row
            metrics.log(step, row, kind="sample")
        return result

    def save(step: int, final: bool) -> Path | None:
        return save_checkpoint(trained, optimizer, rt, run_dir=run_dir, step=step, final=final,
                               keep_last=recipe.train.keep_last, progress=progress, seed=recipe.run.seed,
                               recipe_text=recipe_text, split_state=model.split_state, kind="causal_lm",
                               model_config=dict(parent.model_config), tokenizer_json=parent.tokenizer_path,
                               parent=parent, extra={"stage": "ppo", "step": step, "kl_coef": kl_ctl.beta,
                                                     "reward_stats": dataclasses.asdict(stats)})

    total = recipe.train.max_steps
    metrics = Metrics(run_dir, recipe.log, total_steps=total, is_main=True, quiet=quiet,
                      run_name=recipe.run.name, config={"recipe": recipe_text}, description="ppo",
                      resume_step=progress.step)
    metrics.message(f"llmfs ppo: {rt.describe()}, policy {policy.num_params():,} parameters from {parent.path}, "
                    f"value model {p.value_model}, reward {recipe.reward_model or 'rules'}; {len(train_prompts)} "
                    f"train prompts ({train_name}), {len(held_out)} held out")
    return run_rl_loop(recipe, rt, trained, optimizer, progress, metrics, update=update, evaluate=evaluate,
                       save=save, resume_from=resume_from, run_dir=run_dir)
