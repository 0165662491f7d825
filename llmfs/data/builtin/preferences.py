"""`builtin:preferences`: `prompt`, `chosen`, `rejected` triples whose rejected reply has a labelled defect.

Built on `builtin:instructions`: `prompt` is the conversation up to the graded user turn (a list of messages),
`chosen` is the gold reply, `answer` its gold answer (what `exact_match` checks), and `rejected` is the gold reply
damaged in one way, named in `defect`:

- `wrong_answer`: a different number (the result stated wrong under right columns, or, for sums, the right
  working of a misread operand), a shuffled list, another name from the story
- `off_topic`: the gold reply of an unrelated task
- `rude`: the right content wrapped in contempt
- `truncated`: cut off in the middle
- `repetitive`: the reply looping on itself
- `ignores_format`: the right content in the wrong format (lowercase for capitals, commas for bullets,
  no `Answer:` line)

With `courtesy=P` (default 0) a fraction P of the pairs are of a seventh kind, on both splits:

- `curt`: the right reply without a courtesy closer, where the chosen one ends with one of
  `instructions.CLOSERS` ("Tom. Hope this helps!" over "Tom."): a preference that
  `builtin:instructions?closers=...` demonstrations only partly show, for RLHF to teach. Then half of the other
  pairs (of tasks that take a closer; not `truncated` ones, which stop mid-reply) put one and the same closer on
  both replies, so a reward model learns the closer apart from every defect and cannot be fooled by "Hope this
  helps!" after a wrong answer.

Only defects that make sense for the task are drawn (a two-word reply cannot be truncated meaningfully), so a
reward model's accuracy per defect kind measures what it claims. By default every applicable defect is equally
likely; `weights` reweights the draw of the training split, e.g. `builtin:preferences?weights=wrong_answer:3`
makes a wrong answer three times as likely as each other defect wherever it applies (to train on the hard kind
more). The validation split ignores the weights: held-out accuracies are always of the natural mix, so runs with
different weights are measured on the same pairs.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from llmfs.data.builtin import arithmetic as A
from llmfs.data.builtin import instructions as I
from llmfs.data.builtin import words as W

DEFECTS = ("wrong_answer", "off_topic", "rude", "truncated", "repetitive", "ignores_format")
RUDE = ("Ugh, obviously: {r} Stop wasting my time.", "That is a silly question. Fine: {r}",
        "{r} Even a child knows that.", "Whatever. {r} Don't ask me again.")


def wrong_answer(rng: random.Random, record: dict, reply: str) -> str | None:
    task, answer = record["task"], record["answer"]
    if task == "arithmetic" and rng.random() < 0.5:
        misread = _misread(rng, A.expression_in(record["messages"][-2]["content"]), int(answer))
        if misread is not None:
            return misread
    if task in ("word_problem", "arithmetic"):  # the columns right, the result stated wrong
        wrong = int(answer) + rng.choice([d for d in (-3, -2, -1, 1, 2, 3, 10) if int(answer) + d >= 0])
        *work, result, _ = reply.split("\n")
        return "\n".join([*work, result.rsplit("=", 1)[0] + f"={wrong}", f"Answer: {wrong}"])
    if task in ("list_reverse", "list_sort"):
        items = answer.split(", ")
        shuffled = items[:]
        while shuffled == items:
            rng.shuffle(shuffled)
        return ", ".join(shuffled)
    if task == "list_count":
        return str(int(answer) + rng.choice((-1, 1, 2)))
    if task == "list_longest":
        words = record["messages"][-2]["content"].split("? ", 1)[1].split(" (")[0].split(", ")
        others = [w for w in words if w != answer]
        return rng.choice(others) if others else None
    if task == "story_qa":
        pool = {"Who": W.GIRLS + W.BOYS, "Where": tuple(p for p, _, _ in W.PLACES),
                "What did": tuple(f"a {a} {o}" for o, a in W.OBJECTS)}
        question = record["messages"][-2]["content"]
        for start, options in pool.items():
            if start in question:
                wrong = rng.choice([o for o in options if o != answer])
                return wrong[0].upper() + wrong[1:] + "."
    return None


def _misread(rng: random.Random, expr: str, answer: int) -> str | None:
    """A reply that works, correctly, a problem with one operand misread (off by 1-3): consistent columns, a wrong
    answer, so a reward model has to check the work against the prompt. None when the change is not valid."""
    first, ops = A.operands(expr)
    numbers = [first, *(right for _, right in ops)]
    i = rng.randrange(0, 2 * len(numbers) - 1, 2) // 2  # a token position in `a op b op c`, halved: one number
    numbers[i] += rng.choice((-3, -2, -1, 1, 2, 3))
    value = numbers[0]
    for (op, _), right in zip(ops, numbers[1:]):
        if right < 0 or (op == "-" and right > value) or (op == "*" and not 2 <= right <= 9):
            return None
        value = A.APPLY[op](value, right)
    if numbers[0] < 0 or value == answer:
        return None
    misread = " ".join([str(numbers[0]), *(f"{op} {n}" for (op, _), n in zip(ops, numbers[1:]))])
    work, value = A.worked(misread)
    return f"{work}\nAnswer: {value}"


def off_topic(rng: random.Random, record: dict, reply: str) -> str | None:
    other = record["task"]
    while other == record["task"]:
        other = rng.choice(list(I.TASKS))
    return I.TASKS[other](rng)[1]


def rude(rng: random.Random, record: dict, reply: str) -> str | None:
    return rng.choice(RUDE).format(r=reply)


def truncated(rng: random.Random, record: dict, reply: str) -> str | None:
    if len(reply) < 12:
        return None
    return reply[: rng.randint(len(reply) // 4, len(reply) // 2)].rstrip()


def repetitive(rng: random.Random, record: dict, reply: str) -> str | None:
    first = reply.splitlines()[0]
    return " ".join([first] * rng.randint(3, 6))


def ignores_format(rng: random.Random, record: dict, reply: str) -> str | None:
    task = record["task"]
    if task == "format_upper":
        return reply.lower()
    if task == "format_bullets":
        return ", ".join(line[2:] for line in reply.splitlines())
    if task == "format_json":
        import json

        obj = json.loads(reply)
        return f"name is {obj['name']}, age is {obj['age']}, color is {obj['color']}"
    if task in ("word_problem", "arithmetic"):
        return "\n".join(reply.splitlines()[:-1])  # the working without the `Answer:` line
    return None


DAMAGE: dict[str, Callable[[random.Random, dict, str], str | None]] = {
    "wrong_answer": wrong_answer, "off_topic": off_topic, "rude": rude, "truncated": truncated,
    "repetitive": repetitive, "ignores_format": ignores_format}


def parse_weights(text: str) -> dict[str, float]:
    """`"wrong_answer:3,rude:0.5"` -> {defect: weight} for all DEFECTS (1.0 where not named)."""
    weights = dict.fromkeys(DEFECTS, 1.0)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition(":")
        if name not in DEFECTS or not sep:
            raise ValueError(f"weights: {item!r} is not DEFECT:WEIGHT with DEFECT one of {', '.join(DEFECTS)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"weights: {item!r} has a weight that is not a number") from None
        if not weights[name] > 0:
            raise ValueError(f"weights: {item!r} must be > 0 (leave a defect out by giving the others more)")
    return weights


def _draw_order(rng: random.Random, weights: dict[str, float] | None) -> list[str]:
    """The defects in the order they are tried: uniform (rng.sample) or weighted without replacement
    (Efraimidis & Spirakis 2006: sort by u^(1/w), u uniform in (0, 1)), so the first applicable one is drawn with
    probability proportional to its weight among those that apply."""
    if weights is None:
        return rng.sample(DEFECTS, len(DEFECTS))
    return sorted(DEFECTS, key=lambda d: -(1.0 - rng.random()) ** (1.0 / weights[d]))


def generate(split: str = "train", seed: int = 0, n: int = 2000, valid_fraction: float = 0.1,
             weights: str = "", courtesy: float = 0.0) -> Iterator[dict]:
    """`n` records `{"prompt": messages, "chosen", "rejected", "defect", "task", "answer"}` of one split (`answer`:
    the conversation's gold answer, so rule rewards such as `exact_match` can score replies to these prompts);
    `weights` as `parse_weights` reads it ("" = every defect alike), applied to the training split only;
    `courtesy` the fraction of `curt` pairs (module doc; no draw at all when 0, so the records are those of
    before it)."""
    weighting = parse_weights(weights) if weights else None  # checked on both splits
    if not 0.0 <= courtesy <= 1.0:
        raise ValueError(f"courtesy is a fraction in [0, 1], got {courtesy}")
    if split != "train":
        weighting = None
    rng = random.Random(f"preferences/{seed}")
    conversations = I.generate(split=split, seed=seed, n=10**12, valid_fraction=valid_fraction)
    produced = 0
    for record in conversations:
        if produced >= n:
            return
        chosen = record["messages"][-1]["content"]
        polite = courtesy > 0 and record["task"] not in I.NO_CLOSER  # draws nothing when courtesy is 0
        closer = rng.choice(I.CLOSERS) if polite else ""
        if polite and rng.random() < courtesy:
            pair = (I.with_closer(closer, chosen), chosen, "curt")
        else:
            pair = _damaged(rng, record, chosen, weighting)
            if pair is None:
                continue
            # the same closer on both: not what makes the rejected one worse (a cut-off reply does not sign off)
            if polite and rng.random() < 0.5 and pair[2] != "truncated":
                pair = (I.with_closer(closer, pair[0]), I.with_closer(closer, pair[1]), pair[2])
        yield {"prompt": record["messages"][:-1], "chosen": pair[0], "rejected": pair[1], "defect": pair[2],
               "task": record["task"], "answer": record["answer"]}
        produced += 1


def _damaged(rng: random.Random, record: dict, chosen: str,
             weighting: dict[str, float] | None) -> tuple[str, str, str] | None:
    """(chosen, rejected, defect) with the first applicable defect of the draw, or None when none applies."""
    for defect in _draw_order(rng, weighting):
        rejected = DAMAGE[defect](rng, record, chosen)
        if rejected is not None and rejected != chosen:
            return chosen, rejected, defect
    return None
