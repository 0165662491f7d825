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
    qs = questions(convs, records, TOK, context=1000, max_new_tokens=16)
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


def test_each_question_gets_the_room_its_prompt_leaves_and_is_asked_only_if_its_answer_fits(monkeypatch):
    short, long_ = conv("q", "abc"), conv("x" * 30, "abc")  # prompts of 6 and 35 ids (byte tokens + markers)
    lp, sp = len(render_prompt(TOK, long_[:1])), len(render_prompt(TOK, short[:1]))
    context = lp + 5  # the long prompt leaves 5 ids: "abc" + <|end|> fit, and a 5-letter reply would not
    qs = questions([short, long_, conv("x" * 30, "abcde"), conv("q", "y" * 20)], [{}] * 4, TOK,
                   context=context, max_new_tokens=12)
    assert [(q.prompt, q.room) for q in qs] == [(render_prompt(TOK, short[:1]), 12), (render_prompt(TOK, long_[:1]), 5)]
    assert sp + 12 <= context
    calls = []  # each room generates in its own batches, the longest room first

    def fake_generate(model, prompts, cfg, stop_ids):
        calls.append((len(prompts), cfg.max_new_tokens))
        return [list(b"abc") + [TOK.special_tokens[END]]] * len(prompts)

    monkeypatch.setattr(answers, "generate", fake_generate)
    r = score_answers(None, TOK, qs, max_new_tokens=12, batch_size=8)
    assert calls == [(1, 12), (1, 5)] and r["exact_match"] == 1.0 and r["stop_rate"] == 1.0


def test_prompts_too_long_are_skipped():
    qs = questions([conv("x" * 50, "y")], [{}], TOK, context=26, max_new_tokens=16)
    assert qs == []
