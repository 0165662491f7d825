"""Growing a model's vocabulary in place: the stages that add chat tokens to a pretrained tokenizer (sft,
reward) grow the embedding (and an untied head) to match."""

from __future__ import annotations

import dataclasses

import torch

from llmfs.model.config import ModelConfig


def grow_vocab(model: torch.nn.Module, cfg: ModelConfig, vocab_size: int) -> ModelConfig:
    """Grow the embedding (and an untied head) to `vocab_size` rows in place; new rows are the mean of the
    existing ones (Hewitt 2021: a new token then starts as the average token instead of a random direction
    with a large, arbitrary logit). Returns the new config."""
    new_cfg = dataclasses.replace(cfg, vocab_size=vocab_size)
    old = cfg.vocab_size
    with torch.no_grad():
        emb = model.embed_tokens.weight  # (V, D)
        grown = torch.cat([emb, emb.mean(0, keepdim=True).expand(vocab_size - old, -1)])
        model.embed_tokens.weight = torch.nn.Parameter(grown)
        model.embed_tokens.num_embeddings = vocab_size
        if cfg.tie_embeddings:
            model.lm_head.weight = model.embed_tokens.weight
        else:
            head = model.lm_head.weight
            model.lm_head.weight = torch.nn.Parameter(torch.cat([head, head.mean(0, keepdim=True).expand(
                vocab_size - old, -1)]))
        model.lm_head.out_features = vocab_size
    model.cfg = new_cfg
    return new_cfg
