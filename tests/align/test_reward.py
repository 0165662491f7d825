"""The reward model: what it stores, where the head reads, and scoring through a checkpoint."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from llmfs import checkpoint as ck
from llmfs.align.reward import RewardModel, load_reward_model, score
from llmfs.data.preference import last_index, pad_rows, render_reply
from llmfs.errors import CheckpointError
from llmfs.model.config import ModelConfig
from llmfs.tokenizer.byte import ByteTokenizer
from llmfs.tokenizer.chat import with_chat_tokens
from llmfs.tokenizer.hf import save

CFG = ModelConfig(vocab_size=261, max_seq_len=32, d_model=16, n_layers=2, n_heads=2)
TOK = with_chat_tokens(ByteTokenizer())


def model(seed: int = 0) -> RewardModel:
    torch.manual_seed(seed)
    return RewardModel(CFG, generator=torch.Generator().manual_seed(seed)).eval()


def test_weights_are_backbone_without_lm_head_plus_head():
    names = set(model().state_dict())
    assert {"head.score.weight", "head.score.bias", "backbone.embed_tokens.weight"} <= names
    assert not any("lm_head" in n for n in names) and all(n.startswith(("backbone.", "head.")) for n in names)


def test_head_reads_the_last_real_token_with_left_or_right_padding():
    m = model()
    rows = [tuple(render_reply(TOK, [{"role": "user", "content": p}], r, 32)[0])
            for p, r in (("hi", "hello there"), ("2+2?", "4"), ("name a colour", "red"))]
    alone = torch.stack([m(torch.tensor([r]), torch.tensor([len(r) - 1]))[0][0] for r in rows])  # (3,)
    ids, mask = pad_rows(rows, pad_id=0)
    right, _ = m(ids, last_index(mask))
    torch.testing.assert_close(right, alone)  # causal attention: pads after a row change nothing before them
    ids, mask = pad_rows(rows, pad_id=0, side="left")
    index = last_index(mask)
    assert (index == ids.shape[1] - 1).all()
    # left pads are kept out of attention and positions by making them their own segment
    left, _ = m(ids, index, segment_ids=mask.long())
    torch.testing.assert_close(left, alone)
    hidden = m.backbone(ids, segment_ids=mask.long(), return_hidden=True, return_logits=False).hidden
    torch.testing.assert_close(left, m.head.score(hidden[:, -1]).squeeze(-1))


def save_reward(tmp_path, m: RewardModel):
    save(TOK, tmp_path / "tok")
    return ck.save(tmp_path / "rm", kind="reward", model_config=dataclasses.asdict(CFG), state_dict=m.state_dict(),
                   tokenizer_json=tmp_path / "tok" / "tokenizer.json", extra={"reward_mean": 0.5, "reward_std": 2.0})


def test_load_and_score_round_trip(tmp_path):
    m = model(1)
    path = save_reward(tmp_path, m)
    loaded, tok, ckpt = load_reward_model(path)
    assert ckpt.extra["reward_std"] == 2.0 and not loaded.training
    r = score(loaded, tok, ["hi", [{"role": "user", "content": "2+2?"}]], ["hello", "4"], batch_size=1)
    ids = render_reply(TOK, [{"role": "user", "content": "hi"}], "hello", 32)[0]
    torch.testing.assert_close(r[0], m(torch.tensor([ids]), torch.tensor([len(ids) - 1]))[0][0])
    assert r.shape == (2,) and r.dtype == torch.float32


def test_a_causal_lm_checkpoint_is_refused(tmp_path):
    from llmfs.model.transformer import Transformer

    save(TOK, tmp_path / "tok")
    lm = ck.save(tmp_path / "lm", kind="causal_lm", model_config=dataclasses.asdict(CFG),
                 state_dict=Transformer(CFG).state_dict(), tokenizer_json=tmp_path / "tok" / "tokenizer.json")
    with pytest.raises(CheckpointError, match="is a 'causal_lm' checkpoint; scoring needs a reward checkpoint"):
        load_reward_model(lm)
