"""PPO's critic layouts: where the values come from and what the checkpoint splits off."""

from __future__ import annotations

import pytest
import torch

from llmfs.align.actor_critic import VALUE_MODELS, ActorCritic
from llmfs.align.reward import RewardModel
from llmfs.model.config import ModelConfig
from llmfs.model.transformer import Transformer

CFG = ModelConfig(vocab_size=40, max_seq_len=16, d_model=16, n_layers=2, n_heads=2)


def policy() -> Transformer:
    return Transformer(CFG, generator=torch.Generator().manual_seed(0))


def test_value_model_names_match_the_recipe_literal():
    import typing

    from llmfs.train.ppo import PPOConfig

    assert typing.get_args(typing.get_type_hints(PPOConfig)["value_model"]) == VALUE_MODELS


def test_reward_critic_starts_as_the_reward_model_and_trains_apart_from_it():
    rm = RewardModel(CFG, generator=torch.Generator().manual_seed(1)).eval().requires_grad_(False)
    with torch.no_grad():
        rm.head.score.bias.fill_(0.7)  # a head that differs from a fresh one
    ac = ActorCritic(policy(), "reward", reward_model=rm)
    ids = torch.randint(0, 40, (3, 10), generator=torch.Generator().manual_seed(2))
    _, values = ac(ids)  # (3, 10)
    for t in (4, 9):  # the value at t is the reward model's score of ids[:, :t + 1] read at t
        want, _ = rm(ids, torch.full((3,), t))
        torch.testing.assert_close(values[:, t], want)
    before = {k: v.clone() for k, v in rm.state_dict().items()}
    values.sum().backward()
    torch.optim.SGD([p for p in ac.parameters() if p.grad is not None], lr=1.0).step()
    assert all(torch.equal(before[k], v) for k, v in rm.state_dict().items())  # the reward model stays frozen
    _, state = ac.split_state(ac.state_dict())
    assert {"value_head.score.bias", "value_backbone.embed_tokens.weight"} <= set(state["value.safetensors"])
    with pytest.raises(ValueError, match="needs the reward model"):
        ActorCritic(policy(), "reward")
