"""PPO's policy and value model as one module, so one optimizer, one train_step and one checkpoint serve both.

    value_model = "shared":   the policy's own final hidden states feed a scalar value head (one forward; the
                              value loss also shapes the policy's features; cheap, what nanoGPT-sized RLHF uses)
    value_model = "separate": a second copy of the starting Transformer, used only for its hidden states (twice
                              the compute; the critic cannot disturb the policy)
    value_model = "reward":   a copy of the reward model, backbone and scalar head, read at every position (as
                              InstructGPT, Ouyang et al. 2022, sec. C.4, and TRL's PPOTrainer initialise the
                              critic): it starts out knowing which replies score well, so the first advantages
                              are not the noise of a fresh head

`forward(ids, token_mask=None)` -> (policy output with `.logits`, values (B, T)): the value at position t
estimates the return from the action taken there (emitting token t + 1), the same alignment as the
log-probabilities (`llmfs/align/rollout.py`); token_mask is the rollout's `keep`. Checkpoints keep the policy in
model.safetensors (generate and chat read it) and the rest (`value_head.*`, `value_backbone.*`) in
value.safetensors (`VALUE_FILE`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from llmfs.model.heads import ScalarHead

VALUE_FILE = "value.safetensors"
VALUE_MODELS = ("shared", "separate", "reward")  # PPOConfig.value_model is a Literal of the same names


class ActorCritic(nn.Module):
    cfg = None  # not a Transformer: the DDP / FSDP helpers read no model options from it

    def __init__(self, policy: nn.Module, value_model: str, *, generator: torch.Generator | None = None,
                 reward_model: nn.Module | None = None):
        """`reward_model` (a RewardModel, copied, never changed) is required by value_model = "reward"."""
        super().__init__()
        if value_model not in VALUE_MODELS:
            raise ValueError(f"value_model must be one of {', '.join(VALUE_MODELS)}, got {value_model!r}")
        self.policy = policy
        if value_model == "reward":
            if reward_model is None:
                raise ValueError("value_model = 'reward' needs the reward model to copy")
            self.value_backbone = copy.deepcopy(reward_model.backbone).requires_grad_(True)  # the copy trains
            self.value_head = copy.deepcopy(reward_model.head).requires_grad_(True)
        else:
            self.value_backbone = copy.deepcopy(policy) if value_model == "separate" else None
            if self.value_backbone is not None:
                self.value_backbone.lm_head = None  # its logits are never used
            self.value_head = ScalarHead(policy.cfg.d_model, generator=generator)

    def forward(self, ids: torch.Tensor, token_mask: torch.Tensor | None = None):
        """token_mask (B, T) bool, False at padding: not routed by MoE layers (policy and value backbone)."""
        out = self.policy(ids, return_hidden=self.value_backbone is None, token_mask=token_mask)
        hidden = out.hidden if self.value_backbone is None else \
            self.value_backbone(ids, return_hidden=True, return_logits=False, token_mask=token_mask).hidden
        return out, self.value_head(hidden).float()  # (B, T, D) -> (B, T)

    def split_state(self, state: dict) -> tuple[dict, dict]:
        """Full state -> (policy state, {VALUE_FILE: value state}) for `save_checkpoint`."""
        policy = {k[len("policy."):]: v for k, v in state.items() if k.startswith("policy.")}
        value = {k: v for k, v in state.items() if not k.startswith("policy.")}
        return policy, {VALUE_FILE: value}

    def value_part(self) -> nn.Module:
        """A module whose state dict is exactly the value side (what value.safetensors holds)."""
        part = nn.Module()
        part.value_head = self.value_head
        if self.value_backbone is not None:
            part.value_backbone = self.value_backbone
        return part
