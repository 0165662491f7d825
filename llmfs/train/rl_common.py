"""What the RL stages (`llmfs grpo`, `llmfs ppo`) share: prompt data, the starting policy, rule rewards,
held-out evaluation, and the minibatch passes over one rollout batch."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from llmfs import checkpoint as ck
from llmfs.config import option
from llmfs.errors import CheckpointError, DataError


@dataclasses.dataclass(frozen=True)
class PromptDataConfig:
    """`[data]` of the RL stages: prompts with (for verifiable tasks) an `answer`."""

    train: str = "builtin:arithmetic?level=1&n=2000"
    valid: str = ""  # "" = held out from `train` (a builtin's valid split, else valid_fraction by content hash)
    valid_fraction: float = option(0.05, gt=0, lt=1)
    fields: dict[str, str] = dataclasses.field(default_factory=dict)  # canonical -> column, e.g. {prompt = "question"}
    cache_dir: str = ""  # `datasets` cache; "" = RUN/data/hf_cache
    prompts_per_step: int = option(8, ge=1, doc="distinct prompts per iteration")
    eval_prompts: int = option(100, ge=0, doc="held-out prompts answered greedily at each evaluation; 0 = skip")


@dataclasses.dataclass(frozen=True)
class RLTrainConfig:
    """`[train]` of the RL stages: iterations, evaluation and checkpoints."""

    max_steps: int = option(100, ge=1, doc="iterations (rollout + updates)")
    eval_every: int = option(25, ge=0)
    save_every: int = option(0, ge=0)
    keep_last: int = option(2, ge=1)
    max_skips: int = option(0, ge=0)


class RewardScorer:
    """The weighted sum of the recipe's rewards; a reward that raises scores that reply 0 and is counted."""

    def __init__(self, weights: dict[str, float]):
        from llmfs.align.rewards import REWARDS

        self.fns = [(REWARDS[name], w) for name, w in weights.items()]
        self.errors = 0
        self.first_error: str | None = None

    def __call__(self, replies: list[str], examples: list[dict]) -> torch.Tensor:
        out = []
        for reply, example in zip(replies, examples):
            total = 0.0
            for fn, weight in self.fns:
                try:
                    total += weight * float(fn(reply, example))
                except Exception as e:  # a user's reward function must not stop training
                    self.errors += 1
                    if self.first_error is None:
                        self.first_error = f"{fn.__name__}: {type(e).__name__}: {e}"
            out.append(total)
        return torch.tensor(out)


def start_rl(recipe, stage: str, *, device: str | None, precision: str | None, resume: bool, force: bool):
    """(runtime, run directory, recipe text, checkpoint to resume from or None, policy, tokenizer, parent) of an RL
    stage: one process only for now (rollouts are not split across processes)."""
    from llmfs.config import dump_toml
    from llmfs.errors import LlmfsError
    from llmfs.runtime import setup, teardown
    from llmfs.train.loop import check_run_dir

    rt = setup(recipe.run, device=device, precision=precision)
    if rt.dist.world_size > 1:
        teardown(rt)
        raise LlmfsError(f"llmfs {stage} runs in one process for now (rollouts are not split across processes); "
                         "run it without torchrun")
    run_dir = Path(recipe.run.out_dir) / recipe.run.name
    recipe_text = dump_toml(recipe)
    resume_from = check_run_dir(run_dir, recipe_text, resume, force)
    policy, tokenizer, parent = load_policy(recipe.init_from, rt.device)
    return rt, run_dir, recipe_text, resume_from, policy, tokenizer, parent


def load_policy(init_from: str, device):
    """(model, tokenizer, parent checkpoint) of an RL stage's starting point; it must be a chat model. The
    policy stays in eval mode for the whole stage, i.e. without dropout (TRL's `disable_dropout`): the log-probs
    of the sampling policy, the ones the updates differentiate and the value estimates must come from one
    network, or the first minibatch's ratio is not 1 and the clip measures dropout noise."""
    from llmfs.infer.chat import check_chat_model
    from llmfs.infer.load import load_model

    model, tok, parent = load_model(init_from, device=device)
    if parent.kind != "causal_lm":
        raise CheckpointError(f"init_from {parent.path}: is a '{parent.kind}' checkpoint; start from an SFT one")
    check_chat_model(tok, parent.path / ck.TEMPLATE_FILE, f"init_from {parent.path}")
    return model.eval(), tok, parent


def prepare_prompts(data: PromptDataConfig, tokenizer, room: int, cache_dir: Path, seed: int):
    """(train prompt ids, train records, held-out Questions, train source name): prompts rendered through the
    chat template, those longer than `room` ids left out (an error when none is left)."""
    from llmfs.data.records import split_records
    from llmfs.tokenizer.chat import prompt_messages, render_prompt
    from llmfs.train.answers import Question

    split_args = dict(required=("prompt",), fields=data.fields, valid_fraction=data.valid_fraction,
                      cache_dir=cache_dir, seed=seed)
    train_records, train_name = split_records(data.train, data.valid, "train", **split_args)
    valid_records, valid_name = split_records(data.train, data.valid, "valid", **split_args)
    prompts, records = [], []
    for i, r in enumerate(train_records):
        ids = render_prompt(tokenizer, prompt_messages(r["prompt"], f"{train_name} record {i}"))
        if len(ids) <= room:
            prompts.append(ids)
            records.append(r)
    if not prompts:
        raise DataError(f"{train_name}: no prompt fits the context with room for the reply; shorten the prompts "
                        "or lower max_new_tokens")
    held_out = []
    for i, r in enumerate(valid_records[:data.eval_prompts]):
        ids = render_prompt(tokenizer, prompt_messages(r["prompt"], f"{valid_name} record {i}"))
        if len(ids) <= room:
            level = r.get("level")
            held_out.append(Question(ids, r, str(r.get("task", "")) or "all",
                                     level if isinstance(level, int) else None))
    return prompts, records, held_out, train_name


@torch.no_grad()
def evaluate_answers(model: torch.nn.Module, tokenizer, held_out: list, *, max_new_tokens: int,
                     batch_size: int) -> dict:
    """Greedy replies to the held-out prompts: accuracy (exact match), F1 and stop rate, per task and level."""
    from llmfs.train.answers import score_answers

    if not held_out:
        return {}
    was_training = model.training
    model.eval()
    try:
        r = score_answers(model, tokenizer, held_out, max_new_tokens=max_new_tokens, batch_size=batch_size)
    finally:
        model.train(was_training)
    return {"accuracy" if k == "exact_match" else k: v for k, v in r.items()}


def minibatch_passes(trained: torch.nn.Module, optimizer: torch.optim.Optimizer, tensors: tuple, loss_fn, *,
                     epochs: int, minibatch_size: int, generator: torch.Generator, rt, grad_clip: float,
                     scaler: torch.amp.GradScaler | None = None, stop_after_epoch=None):
    """`epochs` passes over the rollout rows in a fresh shuffled order each, one optimizer update per minibatch
    (`train_step`: clipping, the non-finite guard, fp16's loss scaling); `tensors` are row-aligned.
    `stop_after_epoch()` is asked
    after each pass (PPO's early stop on approximate KL). Returns (the StepResult of the last update, or of the
    first one whose loss was not finite: under fp16's GradScaler that is what counts against train.max_skips;
    whether every update was finite; passes made)."""
    import math

    from llmfs.train.step import train_step

    n = tensors[0].shape[0]
    finite, last, diverged, done = True, None, None, 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for k in range(0, n, minibatch_size):
            mb = order[k:k + minibatch_size].to(tensors[0].device)
            last = train_step(trained, optimizer, [tuple(t[mb] for t in tensors)], loss_fn, autocast=rt.autocast,
                              grad_clip=grad_clip, scaler=scaler)
            finite = finite and last.finite
            if diverged is None and not math.isfinite(last.loss):
                diverged = last
        done += 1
        if stop_after_epoch is not None and stop_after_epoch():
            break
    return diverged or last, finite, done


def run_rl_loop(recipe, rt, trained: torch.nn.Module, optimizer: torch.optim.Optimizer, progress, metrics, *,
                update, evaluate, save, resume_from: Path | None, run_dir: Path) -> Path:
    """The shared loop for an RL stage: an evaluation before the first iteration (not on resume), then
    `update` per step with the recipe's [train] cadence; closes the metrics and the runtime."""
    from llmfs.runtime import teardown
    from llmfs.train.loop import Cadence, Stage, train_loop
    from llmfs.train.schedule import lr_at

    total = recipe.train.max_steps
    stage = Stage(lr_at=lambda step: lr_at(step, recipe.optim.lr, total, recipe.schedule), evaluate=evaluate,
                  sample=lambda step: None, save=save, update=update)
    cadence = Cadence(total, recipe.log.every, recipe.train.eval_every, 0, recipe.train.save_every,
                      recipe.train.max_skips)
    try:
        if resume_from is None:
            metrics.log(0, evaluate(0), kind="eval")
        return train_loop(trained, optimizer, rt, stage, cadence, progress, seed=recipe.run.seed,
                          grad_clip=recipe.optim.grad_clip, metrics=metrics, final_dir=run_dir / "final",
                          resumed_from=resume_from, peak=None)
    finally:
        metrics.close()
        teardown(rt)


def load_reward(path: str, policy_tokenizer_path: Path, device):
    """The reward model, refused before any rollout when it reads text with another tokenizer."""
    from llmfs.align.reward import load_reward_model
    from llmfs.tokenizer.hf import sha256

    rm, rm_tok, ckpt = load_reward_model(path, device=device)
    if ckpt.files[ck.TOKENIZER_FILE] != sha256(policy_tokenizer_path):
        raise CheckpointError(f"reward_model {ckpt.path}: its tokenizer differs from the policy's "
                              f"({policy_tokenizer_path}); train the reward model from the same SFT checkpoint")
    return rm.requires_grad_(False), ckpt
