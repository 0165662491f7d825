"""Rule rewards: hand-written correct, wrong, malformed, empty and very long replies."""

from __future__ import annotations

import pytest

from llmfs.align.rewards import REWARDS, ends_cleanly, exact_match, final_answer, format_follows, token_f1

NUM = {"answer": "42"}
TEXT = {"answer": "a red ball"}


@pytest.mark.parametrize("reply,example,score", [
    ("6 * 7 = 42\nAnswer: 42", NUM, 1.0),
    ("Answer: 42.", NUM, 1.0),
    ("answer:   +42", NUM, 1.0),
    ("Answer: 41\nAnswer: 42", NUM, 1.0),          # the last Answer line counts
    ("Answer: 42\nAnswer: 41", NUM, 0.0),
    ("42", NUM, 1.0),                                # a bare answer is the answer
    ("Answer: 4,2", NUM, 1.0),                       # digit grouping is ignored
    ("The answer is 42", NUM, 0.0),                  # no Answer line and not a bare number
    ("Answer: forty-two", NUM, 0.0),
    ("Answer: 43", NUM, 0.0),
    ("A red ball.", TEXT, 1.0),
    ("  a RED   ball ", TEXT, 1.0),
    ("a blue ball", TEXT, 0.0),
    ("", NUM, 0.0),
    (None, NUM, 0.0),
    (b"Answer: 42", NUM, 0.0),
    ("Answer: 42" + " pad" * 10_000, NUM, 0.0),     # runaway replies are not parsed
    ("Answer: 42", {}, 0.0),                         # an example without a gold answer scores 0
    ("\x00\xff\ud800 Answer:", NUM, 0.0),
    ("A red ball. Hope this helps!", TEXT, 1.0),     # one courtesy closer is ignored ...
    ("6 * 7 = 42\nAnswer: 42\nGlad I could help!\n", NUM, 1.0),
    ("42 Happy to help!", NUM, 1.0),
    ("Answer: 42 Let me know if you need more.", NUM, 1.0),
    ("A red ball. Hope this helps! Hope this helps!", TEXT, 0.0),  # ... only one, and only a whole one at the end
    ("A red ball.Hope this helps!", TEXT, 0.0),
    ("A red ball, hope this helps", TEXT, 0.0),
    ("Hope this helps! A red ball.", TEXT, 0.0),
])
def test_exact_match(reply, example, score):
    assert exact_match(reply, example) == score


@pytest.mark.parametrize("reply,score", [
    ("3 + 4 = 7\nAnswer: 7", 1.0),
    ("Answer: 123", 1.0),
    ("Answer: 7\nthanks", 0.0),                      # the Answer line must come last ...
    ("3 + 4 = 7\nAnswer: 7\nHope this helps!", 1.0),  # ... but for one courtesy closer
    ("Answer: 7 Happy to help!", 1.0),
    ("Answer: 7\nHope this helps!\nHope this helps!", 0.0),
    ("Answer: 7\nAnswer: 7", 0.0),                   # exactly one
    ("Answer: seven", 0.0),
    ("7", 0.0),
    ("", 0.0),
    (12, 0.0),
    ("x" * 30_000, 0.0),
])
def test_format(reply, score):
    assert format_follows(reply, NUM) == score


@pytest.mark.parametrize("reply,score", [("Hello!\nHow can I help?", 1.0), ("Hi\nhi", 0.0), ("", 0.0),
                                         ("   ", 0.0), (None, 0.0)])
def test_ends_cleanly(reply, score):
    assert ends_cleanly(reply, {}) == score


def test_registry_and_final_answer():
    assert REWARDS == {"exact_match": exact_match, "f1": token_f1, "format": format_follows,
                       "ends_cleanly": ends_cleanly}
    assert final_answer("x\nAnswer: 5\n") == "5" and final_answer("no answer") is None


@pytest.mark.parametrize("reply,example,score", [
    ("a red ball", TEXT, 1.0),
    ("A red ball.", TEXT, 1.0),
    ("a red kite", TEXT, 2 * (2 / 3) * (2 / 3) / (4 / 3)),  # 2 of 3 tokens either way: P = R = 2/3
    ("red", TEXT, 2 * 1 * (1 / 3) / (1 + 1 / 3)),          # P = 1, R = 1/3 -> F1 = 0.5
    ("the red red ball is here", TEXT, 2 * (2 / 6) * (2 / 3) / (2 / 6 + 2 / 3)),  # "red" counted once
    ("7 + 35 = 42\nAnswer: 42", NUM, 1.0),                # the Answer line is what is scored
    ("blue", TEXT, 0.0),
    ("", TEXT, 0.0),
    (None, TEXT, 0.0),
    ("a red ball" * 5000, TEXT, 0.0),
    ("a red ball", {}, 0.0),
    ("a red ball Happy to help!", TEXT, 1.0),            # the closer is not a token of the answer
    ("a red ball Happy to help! Happy to help!", TEXT, 2 * (3 / 6) * 1 / (3 / 6 + 1)),  # a second one is
])
def test_token_f1(reply, example, score):
    assert token_f1(reply, example) == pytest.approx(score)
