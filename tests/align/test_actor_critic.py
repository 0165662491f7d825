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


@pytest.mark.parametrize("value_model", ["shared", "separate", "reward"])
def test_padding_is_not_routed_by_moe_policy_or_critic(value_model):
    """token_mask reaches the policy and the critic's backbone: with a capacity limit, a padded batch gives the
    logits and values of its rows packed into one sequence (segment ids keep attention inside each row)."""
    import dataclasses

    cfg = dataclasses.replace(CFG, n_experts=4, top_k=2, capacity_factor=1.0)
    rm = RewardModel(cfg, generator=torch.Generator().manual_seed(1)).eval()
    ac = ActorCritic(Transformer(cfg, generator=torch.Generator().manual_seed(0)).eval(), value_model,
                     generator=torch.Generator().manual_seed(3), reward_model=rm).eval()
    lengths = [5, 12, 7]
    ids = torch.randint(0, 40, (3, 12), generator=torch.Generator().manual_seed(2))
    keep = torch.arange(12)[None] < torch.tensor(lengths)[:, None]
    packed = ids[keep][None]  # (1, 24): the rows' tokens in order
    segments = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])[None]
    with torch.no_grad():
        out, values = ac(ids, token_mask=keep)
        p_out = ac.policy(packed, segment_ids=segments, return_hidden=True)
        hidden = p_out.hidden if ac.value_backbone is None else \
            ac.value_backbone(packed, segment_ids=segments, return_hidden=True, return_logits=False).hidden
        p_values = ac.value_head(hidden).float()
        routed_out, routed = ac(ids)
    torch.testing.assert_close(out.logits[keep], p_out.logits[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values[keep], p_values[0], atol=1e-5, rtol=1e-5)
    # padding routed: other numbers, in the logits and (the critic's backbone, or the shared one) the values
    assert (routed_out.logits[keep] - p_out.logits[0]).abs().max() > 1e-3
    assert (routed[keep] - p_values[0]).abs().max() > 1e-4
