"""`builtin:arithmetic`: verifiable RL prompts (`prompt`, `answer`) at difficulty levels.

A level fixes the operand size, the operations and the number of steps:

| level | operands | operations | steps | example            |
| ----- | -------- | ---------- | ----- | ------------------ |
| 1     | 1 digit  | +          | 1     | 3 + 5              |
| 2     | 2 digits | + -        | 1     | 47 - 18            |
| 3     | 2 digits | + - *      | 1     | 12 * 7             |
| 4     | 2 digits | + - *      | 2     | (23 + 9) * 4       |
| 5     | 3 digits | + - *      | 3     | ((312 - 45) + 80) * 3 |

Multiplication always takes a one-digit right operand, and subtraction never goes below zero, so answers stay
small non-negative integers a small model can learn to write. Each prompt asks for the reply to end with
`Answer: N`, the format the `exact_match` and `format` rewards read (`llmfs/align/rewards.py`).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator

from llmfs.data.builtin.split import wanted


@dataclasses.dataclass(frozen=True)
class Level:
    digits: int
    ops: str
    steps: int


LEVELS = {1: Level(1, "+", 1), 2: Level(2, "+-", 1), 3: Level(2, "+-*", 1), 4: Level(2, "+-*", 2),
          5: Level(3, "+-*", 3)}

ANSWER_INSTRUCTION = "End your reply with a line 'Answer: N'."


def _operand(rng: random.Random, digits: int) -> int:
    return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


def expression(rng: random.Random, level: Level) -> tuple[str, int]:
    """An expression string and its value; parentheses make the left-to-right order explicit."""
    value = _operand(rng, level.digits)
    text = str(value)
    for step in range(level.steps):
        op = rng.choice(level.ops)
        if op == "*":
            right = rng.randint(2, 9)
            value *= right
        elif op == "-":
            right = rng.randint(0, value) if value > 0 else 0
            value -= right
        else:
            right = _operand(rng, level.digits)
            value += right
        text = f"{text} {op} {right}" if step == 0 else f"({text}) {op} {right}"
    return text, value


PROMPTS = ("What is {expr}? " + ANSWER_INSTRUCTION, "Compute {expr}. " + ANSWER_INSTRUCTION,
           "Please work out {expr}. " + ANSWER_INSTRUCTION, "Calculate {expr}. " + ANSWER_INSTRUCTION)


def generate(split: str = "train", seed: int = 0, n: int = 1000, level: int = 0, valid_fraction: float = 0.1,
             max_level: int = 3) -> Iterator[dict]:
    """`n` records `{"prompt", "answer", "level", "expression", "task"}` of one split.

    `level=0` mixes levels 1..`max_level` evenly; a level from 1 to 5 fixes it.
    """
    if level not in (0, *LEVELS):
        raise ValueError(f"level must be 0 (mixed) or one of {sorted(LEVELS)}, got {level}")
    rng = random.Random(f"arithmetic/{seed}")
    produced = 0
    while produced < n:
        lvl = level or rng.randint(1, max_level)
        expr, value = expression(rng, LEVELS[lvl])
        if not wanted(expr, split, valid_fraction):
            continue
        produced += 1
        yield {"prompt": rng.choice(PROMPTS).format(expr=expr), "answer": str(value), "level": lvl,
               "expression": expr, "task": "arithmetic"}
