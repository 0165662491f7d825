"""Gold-answer scoring: prompts cut before the last reply, exact match / F1 / stop rate aggregated by hand."""

from __future__ import annotations

import pytest

from llmfs.tokenizer.byte import ByteTokenizer
from llmfs.tokenizer.chat import END, render_prompt, with_chat_tokens
from llmfs.train import answers
from llmfs.train.answers import questions, score_answers

TOK = with_chat_tokens(ByteTokenizer())


def conv(user, reply):
    return [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]


def test_scores_by_hand(monkeypatch):
    records = [{"task": "count", "answer": "3", "level": 1}, {"task": "count", "answer": "4", "level": 1},
               {"task": "qa", "answer": "a red ball", "level": 2}, {"task": "qa"}]
    convs = [conv("how many? a b c", "3"), conv("how many? a b c d", "4"), conv("what?", "A red ball."),
             conv("and?", "a blue cup")]
    qs = questions(convs, records, TOK, max_prompt=1000)
    assert qs[0].prompt == render_prompt(TOK, convs[0][:1])
    assert qs[3].example == {"answer": "a blue cup"} and qs[3].level is None  # no gold: the reference reply
    end = TOK.special_tokens[END]
    replies = [list(b"3") + [end], list(b"5") + [end], list(b"a red kite"), list(b"a blue cup") + [end]]
    monkeypatch.setattr(answers, "generate", lambda model, prompts, cfg, stop_ids: replies[:len(prompts)]
                        if len(prompts) == 4 else None)
    r = score_answers(None, TOK, qs, max_new_tokens=16, batch_size=4)
    assert r["exact_match"] == pytest.approx(2 / 4)
    assert r["stop_rate"] == pytest.approx(3 / 4)  # "a red kite" ran out of tokens
    assert r["exact_match/count"] == pytest.approx(0.5) and r["exact_match/qa"] == pytest.approx(0.5)
    assert r["f1/qa"] == pytest.approx((2 / 3 + 1.0) / 2)  # "a red kite" vs "a red ball": P = R = 2/3
    assert r["exact_match/level1"] == pytest.approx(0.5) and r["exact_match/level2"] == 0.0


def test_prompts_too_long_are_skipped():
    qs = questions([conv("x" * 50, "y")], [{}], TOK, max_prompt=10)
    assert qs == []
