"""Rule rewards for RL (`REWARDS`): each reads a model's reply and its example and returns a score in [0, 1].

A reward never raises on a malformed reply (not a string, empty, huge, garbage): it scores it 0. Replies are
read the way the built-in tasks ask for them: numeric tasks end with a line `Answer: N`; text tasks are the
answer itself. `exact_match` accepts either form, so one reward serves `builtin:arithmetic` and the gold answers
of `builtin:instructions`. A reply may end with one courtesy phrase (`CLOSERS`: "Hope this helps!", ...), which
grading ignores: "Tom. Hope this helps!" answers "Tom", as a human grader would read it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from llmfs.data.builtin.instructions import CLOSERS

MAX_REPLY_CHARS = 20_000  # replies longer than this are scored 0 rather than parsed (a runaway generation)
_ANSWER_LINE = re.compile(r"(?im)^\s*answer\s*:\s*(.+?)\s*$")
_NUMBER = re.compile(r"^[-+]?\d[\d,]*(\.\d+)?$")


def normalize(text: str) -> str:
    """Case-, whitespace- and end-punctuation-insensitive form for comparing short answers."""
    return " ".join(text.strip().strip(".!").split()).lower()


def without_closer(reply: str) -> str:
    """The reply less one trailing courtesy phrase of CLOSERS (and the space or newline before it); whitespace
    after the phrase is ignored."""
    text = reply.rstrip()
    for closer in CLOSERS:
        if text.endswith(closer) and text[-len(closer) - 1:-len(closer)] in (" ", "\n"):
            return text[:-len(closer) - 1]
    return reply


def final_answer(reply: str) -> str | None:
    """The text after the last `Answer:` line, or None when there is none."""
    matches = _ANSWER_LINE.findall(reply)
    return matches[-1] if matches else None


def _number(text: str) -> str | None:
    t = text.strip().rstrip(".")
    return t.replace(",", "").lstrip("+") if _NUMBER.match(t) else None


def _readable(reply: Any) -> bool:
    return isinstance(reply, str) and 0 < len(reply) <= MAX_REPLY_CHARS


def exact_match(reply: Any, example: Mapping[str, Any]) -> float:
    """1.0 when the reply's `Answer:` line, or the whole reply, equals the gold answer (numbers compared as
    numbers: `1,000` = `1000`), else 0.0."""
    if not _readable(reply) or "answer" not in example:
        return 0.0
    gold = str(example["answer"])
    reply = without_closer(reply)
    candidate = final_answer(reply)
    candidates = [candidate] if candidate is not None else [reply]
    for c in candidates:
        if _number(gold) is not None and _number(c) is not None:
            if float(_number(c)) == float(_number(gold)):
                return 1.0
        elif normalize(c) == normalize(gold):
            return 1.0
    return 0.0


def token_f1(reply: Any, example: Mapping[str, Any]) -> float:
    """SQuAD's token-level F1 (Rajpurkar et al. 2016) between the reply (its `Answer:` line when it has one) and
    the gold answer, both `normalize`d and split on whitespace: partial credit for a partly right answer."""
    if not _readable(reply) or "answer" not in example:
        return 0.0
    reply = without_closer(reply)
    candidate = final_answer(reply)
    pred = normalize(reply if candidate is None else candidate).split()
    gold = normalize(str(example["answer"])).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum(min(pred.count(t), gold.count(t)) for t in set(pred))
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def format_follows(reply: Any, example: Mapping[str, Any]) -> float:
    """1.0 when the reply ends with exactly one `Answer: N` line holding a number (the format arithmetic asks
    for), whatever the number, a trailing courtesy closer aside; 0.0 otherwise."""
    if not _readable(reply):
        return 0.0
    reply = without_closer(reply)
    lines = [line for line in reply.strip().splitlines() if line.strip()]
    if not lines or len(_ANSWER_LINE.findall(reply)) != 1:
        return 0.0
    last = _ANSWER_LINE.match(lines[-1])
    return 1.0 if last is not None and _number(last.group(1)) is not None else 0.0


def ends_cleanly(reply: Any, example: Mapping[str, Any]) -> float:
    """1.0 for a non-empty reply that does not repeat any of its lines (a cheap guard against looping)."""
    if not _readable(reply) or not reply.strip():
        return 0.0
    lines = [normalize(line) for line in reply.splitlines() if line.strip()]
    return 1.0 if len(lines) == len(set(lines)) else 0.0


RewardFn = Callable[[Any, Mapping[str, Any]], float]
REWARDS: dict[str, RewardFn] = {"exact_match": exact_match, "f1": token_f1, "format": format_follows,
                                "ends_cleanly": ends_cleanly}
