"""The reward model: a Transformer backbone and a scalar head read at the last token of prompt + reply.

    model, tokenizer, ckpt = load_reward_model("runs/reward", device="cpu")
    r = score(model, tokenizer, ["2+2?"], ["4"])                 # (1,) rewards
    z = (r - ckpt.extra["reward_mean"]) / ckpt.extra["reward_std"]  # normalised as PPO reads it

Architecture: `RewardModel(cfg)` = `.backbone`, a `Transformer(cfg)` without its `lm_head` (the reward never needs
vocabulary logits: a tied head costs nothing, but an untied one would be V x D dead weights, so neither is
stored), and `.head`, a `ScalarHead(d_model)` (`llmfs/model/heads.py`). The reward of a reply is the head applied
to the final-norm hidden state at the last id of `prompt + reply` rendered with the chat template, which is the
reply's `<|end|>` (`llmfs/data/preference.py`): the one position that has attended to the whole reply, and a
token whose meaning is "the reply ends here" (the same choice as InstructGPT and TRL's RewardTrainer, which read
the last non-padding token).

With `likelihood_coef` = beta > 0 (`[reward] likelihood_coef`) the reward adds beta times the reply's mean token
log-probability under the backbone's own language-model head, `r = head(h_end) + beta * mean_t log p(y_t | x,
y_<t)` over the reply's ids and its `<|end|>`: the length-normalised implicit reward of SimPO (Meng et al. 2024).
Why: a backbone fine-tuned to answer already knows when an answer is wrong (the next-token distribution at a
wrong digit puts its mass elsewhere), but a head reading one position at the end of the reply has to learn to
carry that knowledge there, and on the built-in world it does so only partly (docs/bench/rlhf.md). The term reads
it directly; training (Bradley-Terry on the sum) moves both the head and the likelihood. The vocabulary matrix is
the tied embedding, or, for an untied parent, its `lm_head`, then kept as `lm_head.weight`.

Checkpoint (kind "reward", `llmfs/checkpoint.py`): `model.safetensors` holds `backbone.*` (the Transformer's
names, without `lm_head.weight`) and `head.score.weight` / `head.score.bias`; `config.json`'s `model` section is
the backbone's ModelConfig; `extra` holds the held-out `reward_mean` / `reward_std` (for PPO to normalise),
`seq_len` (what `score` cuts to), `likelihood_coef` (0 when absent) and the final evaluation metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmfs.model.config import ModelConfig
from llmfs.model.heads import ScalarHead


class RewardModel(nn.Module):
    def __init__(self, cfg: ModelConfig, *, backbone: nn.Module | None = None,
                 generator: torch.Generator | None = None, likelihood_coef: float = 0.0):
        """A fresh backbone from `cfg`, or `backbone` (a Transformer with weights, e.g. an SFT model); the
        backbone's lm_head is removed either way (see module doc); an untied one is kept as `.lm_head` when
        `likelihood_coef` > 0 reads it."""
        from llmfs.model.transformer import Transformer

        super().__init__()
        self.cfg = cfg
        self.likelihood_coef = float(likelihood_coef)
        self.backbone = backbone if backbone is not None else Transformer(cfg)
        self.lm_head = self.backbone.lm_head if self.likelihood_coef > 0 and not cfg.tie_embeddings else None
        self.backbone.lm_head = None
        self.head = ScalarHead(cfg.d_model, generator=generator)

    def vocab_weight(self) -> torch.Tensor:
        """(V, D): the matrix that turns a final hidden state into next-token logits."""
        return self.backbone.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    def forward(self, input_ids: torch.Tensor, index: torch.Tensor, *, start: torch.Tensor | None = None,
                segment_ids: torch.Tensor | None = None):
        """input_ids (B, T), index (B,) of each row's scored position (its `<|end|>`), start (B,) of each row's
        first reply id (needed when likelihood_coef > 0) -> (rewards (B,) float32, backbone output, whose MoE aux
        terms the training step adds). Rows are right-padded: the ids after `index` are padding, which an MoE
        backbone does not route (`token_mask`)."""
        keep = None
        if segment_ids is None:
            keep = torch.arange(input_ids.shape[1], device=input_ids.device)[None] <= index[:, None]  # (B, T)
        out = self.backbone(input_ids, segment_ids=segment_ids, return_hidden=True, return_logits=False,
                            token_mask=keep)
        rewards = self.head(out.hidden, index).float()  # hidden (B, T, D) -> (B,)
        if self.likelihood_coef > 0:
            if start is None:
                raise ValueError("this reward model adds the reply's likelihood: pass start, each reply's first id")
            rewards = rewards + self.likelihood_coef * reply_logprob(out.hidden, self.vocab_weight(), input_ids,
                                                                     start, index)
        return rewards, out

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def reply_logprob(hidden: torch.Tensor, vocab_weight: torch.Tensor, ids: torch.Tensor, start: torch.Tensor,
                  index: torch.Tensor) -> torch.Tensor:
    """(B,) mean log-probability of each row's ids at positions start..index (the reply and its `<|end|>`) given
    what precedes them: hidden (B, T, D) final-norm states, vocab_weight (V, D), ids (B, T), start / index (B,)."""
    logp = F.log_softmax(F.linear(hidden[:, :-1], vocab_weight).float(), dim=-1)  # (B, T-1, V): t predicts t+1
    taken = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1): log p of the id at t+1
    at = torch.arange(1, ids.shape[1], device=ids.device)  # (T-1,) the position of each predicted id
    mask = (at >= start[:, None]) & (at <= index[:, None])  # (B, T-1)
    return (taken * mask).sum(1) / mask.sum(1).clamp(min=1)


def load_reward_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[RewardModel, Any, Any]:
    """(model in eval mode, tokenizer, Checkpoint) from a reward checkpoint or run directory."""
    from llmfs import checkpoint as ck
    from llmfs.config import from_dict
    from llmfs.errors import CheckpointError
    from llmfs.infer.load import load_tokenizer

    ckpt = ck.open_checkpoint(path)
    if ckpt.kind != "reward":
        raise CheckpointError(f"{ckpt.path}: is a '{ckpt.kind}' checkpoint; scoring needs a reward checkpoint "
                              "(the output of 'llmfs reward train')")
    cfg = from_dict(ModelConfig, dict(ckpt.model_config), source=str(ckpt.path / ck.CONFIG_FILE))
    model = RewardModel(cfg, likelihood_coef=float(ckpt.extra.get("likelihood_coef") or 0.0))
    ck.load_weights(ckpt, model)
    return model.to(device).eval(), load_tokenizer(ckpt.tokenizer_path), ckpt


@torch.no_grad()
def score(model: RewardModel, tokenizer, prompts: Sequence[str | list], responses: Sequence[str], *,
          seq_len: int | None = None, batch_size: int = 32) -> torch.Tensor:
    """(N,) float32 rewards of each (prompt, response): a prompt is a string (one user turn) or a message list.
    Renderings longer than `seq_len` (default: the model's max_seq_len) keep their end, as in training."""
    from llmfs.data.preference import last_index, pad_rows, render_reply, reply_start
    from llmfs.tokenizer.chat import prompt_messages

    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    seq_len = seq_len or model.cfg.max_seq_len
    pad_id = getattr(tokenizer, "eot_id", None) or 0
    rows = [tuple(render_reply(tokenizer, prompt_messages(p, f"prompt {k}"), r, seq_len)[0])
            for k, (p, r) in enumerate(zip(prompts, responses))]
    starts = [reply_start(len(row), len(tokenizer.encode_ordinary(r))) for row, r in zip(rows, responses)]
    device = next(model.parameters()).device
    out = []
    for k in range(0, len(rows), batch_size):
        ids, mask = pad_rows(rows[k:k + batch_size], pad_id)
        start = torch.tensor(starts[k:k + batch_size], device=device)
        rewards, _ = model(ids.to(device), last_index(mask).to(device), start=start)
        out.append(rewards.cpu())
    return torch.cat(out) if out else torch.zeros(0)


def read_pairs_file(path: str | Path) -> tuple[list, list[str]]:
    """(prompts, responses) of a JSON-lines file whose lines are {"prompt", "response"} (blank lines skipped)."""
    import json

    from llmfs.errors import DataError

    p = Path(path)
    if not p.is_file():
        raise DataError(f"--file {p}: not found; give a JSON-lines file of {{\"prompt\", \"response\"}} objects")
    prompts, responses = [], []
    from llmfs.data.sources import read_utf8

    for n, line in enumerate(read_utf8(p).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{p}:{n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("response"), str) or "prompt" not in row:
            raise DataError(f"{p}:{n}: each line must be an object with 'prompt' (a string or message list) and "
                            "'response' (a string)")
        prompts.append(row["prompt"])
        responses.append(row["response"])
    if not prompts:
        raise DataError(f"{p}: holds no lines to score")
    return prompts, responses


def run_score(checkpoint: str, *, prompt: str | None, response: str | None, file: str | None,
              device: str | None) -> list[str]:
    """What `llmfs reward score` prints: the reward of one pair, or a JSON line per line of `file`."""
    import json

    from llmfs.errors import LlmfsError
    from llmfs.runtime import resolve_device

    single = prompt is not None and response is not None
    if single == (file is not None) or (file is not None and (prompt, response) != (None, None)):
        raise LlmfsError("give --prompt TEXT and --response TEXT, or --file pairs.jsonl (one {\"prompt\", "
                         "\"response\"} object per line), not both")
    model, tokenizer, ckpt = load_reward_model(checkpoint, resolve_device(device or "auto"))
    seq_len = ckpt.extra.get("seq_len") or model.cfg.max_seq_len
    if single:
        return [f"{float(score(model, tokenizer, [prompt], [response], seq_len=seq_len)[0]):.6f}"]
    prompts, responses = read_pairs_file(file)
    rewards = score(model, tokenizer, prompts, responses, seq_len=seq_len)
    return [json.dumps({"prompt": p, "response": r, "reward": round(float(x), 6)})
            for p, r, x in zip(prompts, responses, rewards)]
