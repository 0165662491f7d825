"""SFT data: truncation counts, padded vs packed batches (same losses), deterministic order and curricula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llmfs.data.sft import (IGNORE, Example, batch_indices, conversation, curriculum_order, pack_batch,
                            pad_batch, render_examples)
from llmfs.errors import DataError
from llmfs.model.config import ModelConfig
from llmfs.model.transformer import Transformer
from llmfs.tokenizer.byte import ByteTokenizer
from llmfs.tokenizer.chat import END, with_chat_tokens

TOK = with_chat_tokens(ByteTokenizer())


def chat(user: str, reply: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}], **extra}


def test_truncation_cuts_long_answers_and_drops_lost_ones():
    records = [chat("hi", "ok"),  # 2 + 1 + 1 + 1 + 2 + 1 = 8 ids
               chat("hi", "a long answer"),  # cut: the answer starts inside the window
               chat("a very long question indeed", "x")]  # the prompt alone fills the window: dropped
    examples, report = render_examples(records, TOK, seq_len=9, source="mem")
    assert (report.total, report.cut, report.dropped) == (3, 1, 1)
    assert [len(e.ids) for e in examples] == [8, 10]
    assert examples[1].mask[-1] and examples[1].ids[-1] != TOK.special_tokens[END]  # cut inside the answer


def test_everything_dropped_and_empty_are_errors():
    with pytest.raises(DataError, match="every one of the 1 conversations lost its whole answer"):
        render_examples([chat("a very long question indeed", "x")], TOK, seq_len=8, source="mem")
    with pytest.raises(DataError, match="mem: holds no records"):
        render_examples([], TOK, seq_len=8, source="mem")


def test_records_are_checked_and_named():
    with pytest.raises(DataError, match="train.jsonl record 1: message 1 has unknown role 'bot'"):
        render_examples([chat("a", "b"), {"messages": [{"role": "user", "content": "a"},
                                                       {"role": "bot", "content": "b"}]}],
                        TOK, seq_len=64, source="train.jsonl")
    with pytest.raises(DataError, match="needs 'messages'.*it has: prompt"):
        conversation({"prompt": "x"}, "r")
    alpaca = conversation({"instruction": "Say hi", "output": "hi"}, "r")
    assert [m["role"] for m in alpaca] == ["user", "assistant"]


def test_padded_targets_by_hand():
    ex = Example(ids=(1, 2, 3, 4), mask=(False, False, True, True), task="", difficulty=0)
    short = Example(ids=(5, 6), mask=(False, True), task="", difficulty=0)
    x, y, seg, keep = pad_batch([ex, short], pad_id=0)
    assert seg is None
    assert x.tolist() == [[1, 2, 3], [5, 0, 0]]
    assert keep.tolist() == [[True, True, True], [True, False, False]]
    assert y.tolist() == [[IGNORE, 3, 4], [6, IGNORE, IGNORE]]


def test_pack_first_fit_by_hand():
    a = Example((1, 2, 3, 4, 5), (False,) * 3 + (True,) * 2, "", 0)  # 4 inputs
    b = Example((6, 7, 8, 9), (False, False, True, True), "", 0)  # 3 inputs
    c = Example((10, 11, 12), (False, True, True), "", 0)  # 2 inputs
    x, y, seg, keep = pack_batch([a, b, c], seq_len=6, pad_id=0)
    assert keep.tolist() == [[True] * 6, [True, True, True, False, False, False]]
    assert x.tolist() == [[1, 2, 3, 4, 10, 11], [6, 7, 8, 0, 0, 0]]
    assert y.tolist() == [[IGNORE, IGNORE, 4, 5, 11, 12], [IGNORE, 8, 9, IGNORE, IGNORE, IGNORE]]
    assert seg.tolist() == [[0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1]]


@pytest.mark.parametrize("position", ["rope", "learned"])
def test_packed_and_padded_give_the_same_losses(position):
    records = [chat("what is two plus two?", "four"), chat("hi", "hello there, friend"),
               chat("sort: b a", "a b"), {"messages": [
                   {"role": "system", "content": "be kind"}, {"role": "user", "content": "yo"},
                   {"role": "assistant", "content": "hey"}, {"role": "user", "content": "bye"},
                   {"role": "assistant", "content": "see you"}]}]
    examples, _ = render_examples(records, TOK, seq_len=96, source="mem")
    cfg = ModelConfig(vocab_size=TOK.vocab_size, max_seq_len=96, d_model=32, n_layers=2, n_heads=4,
                      position=position, dropout=0.0)
    model = Transformer(cfg, generator=torch.Generator().manual_seed(0)).eval()

    def per_token(x, y, seg):
        logits = model(x, segment_ids=seg).logits
        return F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE, reduction="none").view(y.shape)

    with torch.no_grad():
        xp, yp, _, _ = pad_batch(examples, pad_id=0)
        xk, yk, sk, _ = pack_batch(examples, seq_len=96, pad_id=0)
        assert xk.shape[0] < xp.shape[0]  # packing saved rows
        lp, lk = per_token(xp, yp, None), per_token(xk, yk, sk)
        mean_p = lp[yp != IGNORE].mean()
        mean_k = lk[yk != IGNORE].mean()
        torch.testing.assert_close(mean_k, mean_p, rtol=1e-5, atol=1e-5)
        # per conversation: each packed segment's loss equals that conversation's padded row
        padded = sorted(round(float(lp[r][yp[r] != IGNORE].sum()), 4) for r in range(len(examples)))
        packed = sorted(round(float(lk[r][(sk[r] == s) & (yk[r] != IGNORE)].sum()), 4)
                        for r in range(xk.shape[0]) for s in sk[r].unique().tolist()
                        if bool(((sk[r] == s) & (yk[r] != IGNORE)).any()))
        assert packed == pytest.approx(padded, abs=1e-3)


def test_batch_order_is_a_pure_function_of_seed_and_step():
    n, bs = 10, 4
    seen = np.concatenate([batch_indices(s, bs, n, seed=3) for s in range(5)])  # 2 epochs
    assert sorted(seen[:10].tolist()) == list(range(10)) and sorted(seen[10:20].tolist()) == list(range(10))
    assert not np.array_equal(seen[:10], seen[10:20])  # each epoch its own permutation
    assert np.array_equal(batch_indices(3, bs, n, seed=3), seen[12:16])  # a resumed step: same examples
    assert not np.array_equal(batch_indices(0, bs, n, seed=4), batch_indices(0, bs, n, seed=3))


def test_curricula_order_the_first_epoch_easy_to_hard():
    exs = [Example(tuple(range(k)), (True,) * k, "", d) for k, d in [(5, 2.0), (3, 3.0), (9, 1.0), (4, 1.0)]]
    assert curriculum_order(exs, "none", 0) is None
    by_len = curriculum_order(exs, "length", 0)
    assert [len(exs[i].ids) for i in by_len] == [3, 4, 5, 9]
    by_level = curriculum_order(exs, "difficulty", 0)
    assert [exs[i].difficulty for i in by_level] == [1.0, 1.0, 2.0, 3.0]
    first = np.concatenate([batch_indices(s, 2, 4, seed=0, first_epoch=by_len) for s in range(2)])
    assert first.tolist() == by_len.tolist()
    later = np.concatenate([batch_indices(s, 2, 4, seed=0, first_epoch=by_len) for s in range(2, 4)])
    assert sorted(later.tolist()) == [0, 1, 2, 3]
