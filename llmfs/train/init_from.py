"""Where the stages after pretraining start (`sft`, `reward`): the parent causal_lm checkpoint named by the
recipe's `init_from`, its tokenizer with the chat tokens (appended, and saved into RUN/tokenizer), and its
Transformer with the embedding (and an untied head) grown to match when tokens were added."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from llmfs import checkpoint as ck
from llmfs.config import from_dict
from llmfs.errors import CheckpointError
from llmfs.model.config import ModelConfig
from llmfs.runtime import Runtime


@dataclasses.dataclass
class Start:
    parent: ck.Checkpoint
    tokenizer: Any  # the parent's tokenizer with the chat tokens
    tok_dir: Path  # RUN/tokenizer, where it was saved (with chat_template.jinja)
    model: torch.nn.Module  # the parent's Transformer on the run's device, grown when tokens were added
    cfg: ModelConfig  # its (possibly grown) config
    resized: dict | None  # what growing did, for the checkpoint's `extra`; None when nothing was added
    pad_id: int  # the parent's end-of-text id (never a training target), else 0


def start_from(init_from: str, run_dir: Path, rt: Runtime, *, stage: str) -> Start:
    from llmfs.model.resize import grow_vocab
    from llmfs.model.transformer import Transformer
    from llmfs.tokenizer.chat import with_chat_tokens
    from llmfs.tokenizer.hf import load, save
    from llmfs.train.loop import barrier

    parent = ck.open_checkpoint(init_from)
    if parent.kind != "causal_lm":
        raise CheckpointError(f"init_from {parent.path}: is a '{parent.kind}' checkpoint; {stage} starts from a "
                              "causal_lm (a pretrain, sft or imported checkpoint)")
    base_tok = load(parent.tokenizer_path)
    tokenizer = with_chat_tokens(base_tok)
    tok_dir = run_dir / "tokenizer"
    if rt.dist.is_main:
        save(tokenizer, tok_dir)
    barrier(rt)
    cfg = from_dict(ModelConfig, dict(parent.model_config), source=str(parent.path / ck.CONFIG_FILE))
    model = Transformer(cfg)
    ck.load_weights(parent, model)
    resized = None
    if tokenizer.vocab_size > cfg.vocab_size:
        resized = {"from": cfg.vocab_size, "to": tokenizer.vocab_size, "init": "mean of existing rows",
                   "added_tokens": [t for t in tokenizer.special_tokens if t not in base_tok.special_tokens]}
        cfg = grow_vocab(model, cfg, tokenizer.vocab_size)
    pad_id = base_tok.eot_id if base_tok.eot_id is not None else 0
    return Start(parent, tokenizer, tok_dir, model.to(rt.device), cfg, resized, pad_id)
