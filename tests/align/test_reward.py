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


@pytest.mark.parametrize("tied", [True, False])
def test_likelihood_term_adds_the_language_models_mean_reply_logprob(tmp_path, tied):
    """likelihood_coef = beta: reward = head(h_end) + beta * mean log p(reply ids and <|end|>), the log-probs
    taken from the parent Transformer's own logits (an untied lm_head is kept and saved); score() and a
    checkpoint round trip give the same numbers; without each row's reply start the model refuses."""
    import copy

    from llmfs.model.transformer import Transformer
    from llmfs.tokenizer.chat import render_prompt

    cfg = dataclasses.replace(CFG, tie_embeddings=tied)
    lm = Transformer(cfg, generator=torch.Generator().manual_seed(3)).eval()
    m = RewardModel(cfg, backbone=copy.deepcopy(lm), generator=torch.Generator().manual_seed(4),
                    likelihood_coef=2.0).eval()
    assert any("lm_head" in n for n in m.state_dict()) != tied
    talks = [("hi", "hello there"), ("2+2?", "4"), ("name a colour", "red")]
    got = score(m, TOK, [p for p, _ in talks], [r for _, r in talks], batch_size=2)  # (3,), right-padded batches
    for k, (p, r) in enumerate(talks):
        messages = [{"role": "user", "content": p}]
        ids = render_reply(TOK, messages, r, 32)[0]
        first = len(render_prompt(TOK, messages))  # the reply's first id; the rendering ends with <|end|>
        with torch.no_grad():
            logp = torch.log_softmax(lm(torch.tensor([ids])).logits[0].double(), -1)  # (T, V)
            mean = sum(float(logp[t - 1, ids[t]]) for t in range(first, len(ids))) / (len(ids) - first)
            hidden = m.backbone(torch.tensor([ids]), return_hidden=True, return_logits=False).hidden
            head = float(m.head(hidden, torch.tensor([len(ids) - 1]))[0])
        assert float(got[k]) == pytest.approx(head + 2.0 * mean, abs=1e-4)
    with pytest.raises(ValueError, match="pass start"):
        m(torch.tensor([ids]), torch.tensor([len(ids) - 1]))
    save(TOK, tmp_path / "tok")
    path = ck.save(tmp_path / "rm", kind="reward", model_config=dataclasses.asdict(cfg), state_dict=m.state_dict(),
                   tokenizer_json=tmp_path / "tok" / "tokenizer.json", extra={"likelihood_coef": 2.0})
    loaded, tok, _ = load_reward_model(path)
    torch.testing.assert_close(score(loaded, tok, [p for p, _ in talks], [r for _, r in talks]), got)


def test_an_moe_backbone_does_not_route_the_padding():
    """Right-padded rows: the expert load of the batch is the real tokens' (each row alone, weighted by its
    length), and every reward equals the row's alone."""
    cfg = dataclasses.replace(CFG, n_experts=4, top_k=2)
    m = RewardModel(cfg, generator=torch.Generator().manual_seed(0)).eval()
    rows = [tuple(render_reply(TOK, [{"role": "user", "content": p}], r, 32)[0])
            for p, r in (("hi", "hello there"), ("2+2?", "4"))]
    alone = [m(torch.tensor([r]), torch.tensor([len(r) - 1])) for r in rows]
    ids, mask = pad_rows(rows, pad_id=0)
    rewards, out = m(ids, last_index(mask))
    torch.testing.assert_close(rewards, torch.cat([r for r, _ in alone]))
    n = torch.tensor([len(r) for r in rows], dtype=torch.float32)
    for layer, load in enumerate(out.expert_load):
        want = sum(o.expert_load[layer] * k for (_, o), k in zip(alone, n)) / n.sum()
        torch.testing.assert_close(load, want)
