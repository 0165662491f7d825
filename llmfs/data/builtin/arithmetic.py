"""`builtin:arithmetic`: verifiable RL prompts (`prompt`, `answer`) at difficulty levels.

A level fixes the operand size, the operations and the number of steps:

| level | operands | operations | steps | example            |
| ----- | -------- | ---------- | ----- | ------------------ |
| 1     | 1 digit  | +          | 1     | 3 + 5              |
| 2     | 2 digits | + -        | 1     | 47 - 18            |
| 3     | 2 digits | + - *      | 1     | 12 * 7             |
| 4     | 2 digits | + - *      | 2     | (23 + 9) * 4       |
| 5     | 3 digits | + - *      | 3     | ((312 - 45) + 80) * 3 |

`ops=` (e.g. `add,sub`) and `digits=` (1-3) replace a level's operations and operand size.
Multiplication always takes a one-digit right operand, and subtraction never goes below zero, so answers stay
small non-negative integers a small model can learn to write. Each prompt asks for the reply to end with
`Answer: N`, the format the `exact_match` and `format` rewards read (`llmfs/align/rewards.py`).

`worked(expr)` writes the solution the way a pupil does, column by column from the ones (the gold replies of
`builtin:instructions`):

    7+8=15
    4+1+1=6
    47+18=65

Each line needs one single-digit fact and the digits it reads sit in the prompt or the line above, so a small
model can add numbers it never saw by composing facts it did see (a "scratchpad", Nye et al. 2021, "Show Your
Work"). A reply that states only `47 + 18 = 65` asks the model to memorise every sum: measured here, an SFT model
trained that way solved none of the held-out one-digit sums and 3% of the held-out two-digit ones.
"""

from __future__ import annotations

import dataclasses
import random
import re
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


def _digits(n: int) -> list[int]:
    return [int(c) for c in reversed(str(n))]  # ones first


def _column_add(a: int, b: int) -> list[str]:
    """One line per column, ones first: `x+y(+1)=s`; s >= 10 carries 1 into the next column."""
    da, db = _digits(a), _digits(b)
    lines, carry = [], 0
    for i in range(max(len(da), len(db))):
        x, y = da[i] if i < len(da) else 0, db[i] if i < len(db) else 0
        s = x + y + carry
        lines.append(f"{x}+{y}" + ("+1" if carry else "") + f"={s}")
        carry = s // 10
    return lines


def _column_sub(a: int, b: int) -> list[str]:  # a >= b
    """`x-y(-1)=d`, or `1x-y(-1)=d` when the column borrows ten from the next one (which then subtracts 1)."""
    da, db = _digits(a), _digits(b)
    lines, borrow = [], 0
    for i in range(len(da)):
        x, y = da[i], db[i] if i < len(db) else 0
        d = x - y - borrow
        rest = f"-{y}" + ("-1" if borrow else "")
        lines.append(f"{x}{rest}={d}" if d >= 0 else f"1{x}{rest}={d + 10}")
        borrow = int(d < 0)
    return lines


def _column_mul(a: int, m: int) -> list[str]:  # m has one digit
    """`x*m(+c)=p`; the tens of p carry into the next column."""
    lines, carry = [], 0
    for x in _digits(a):
        p = x * m + carry
        lines.append(f"{x}*{m}" + (f"+{carry}" if carry else "") + f"={p}")
        carry = p // 10
    return lines


COLUMNS = {"+": _column_add, "-": _column_sub, "*": _column_mul}
APPLY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def operands(expr: str) -> tuple[int, list[tuple[str, int]]]:
    """`(23 + 9) * 4` -> (23, [("+", 9), ("*", 4)]): the first number, then each step's operator and operand."""
    tokens = expr.replace("(", "").replace(")", "").split()  # [a, op, b, op, c, ...]
    return int(tokens[0]), list(zip(tokens[1::2], map(int, tokens[2::2])))


def worked(expr: str) -> tuple[str, int]:
    """The column-by-column solution of `expr` (the format `expression` writes: integers, + - *, evaluated left
    to right, parentheses only around the left part) and its value. A step whose operands both have one digit is
    one fact (`3+5=8`); a longer step works its columns, ones first, then states its result: the result's digits
    are the last digit of each column line read upwards, the top column written whole (`8+4+1=13` over `5+7=12`
    gives 132). No spaces: this tokenizer gives every space its own token."""
    value, ops = operands(expr)
    lines = []
    for op, right in ops:
        if op == "*" and right >= 10:
            raise ValueError(f"worked({expr!r}): a multiplier has one digit")
        result = APPLY[op](value, right)
        if max(value, right) >= 10:
            lines += COLUMNS[op](value, right)
        lines.append(f"{value}{op}{right}={result}")
        value = result
    return "\n".join(lines), value


EXPRESSION_IN_PROMPT = re.compile(r"[(\d][\d()+\-* ]*\d")


def expression_in(prompt: str) -> str:
    """The expression a prompt of PROMPTS asks about (the first run of digits, operators and parentheses)."""
    return EXPRESSION_IN_PROMPT.search(prompt).group(0)


PROMPTS = ("What is {expr}? " + ANSWER_INSTRUCTION, "Compute {expr}. " + ANSWER_INSTRUCTION,
           "Please work out {expr}. " + ANSWER_INSTRUCTION, "Calculate {expr}. " + ANSWER_INSTRUCTION)


OP_NAMES = {"add": "+", "sub": "-", "mul": "*"}  # names, not symbols: a '+' in a query string reads as a space


def parse_ops(ops: str) -> str:
    """"mul" -> "*", "add,sub" -> "+-"; "" -> "" (each level's own operations)."""
    names = [o.strip() for o in ops.split(",") if o.strip()]
    unknown = [o for o in names if o not in OP_NAMES]
    if unknown:
        raise ValueError(f"ops: unknown operation {unknown[0]!r}; use a comma-separated subset of "
                         f"{', '.join(OP_NAMES)}")
    return "".join(OP_NAMES[o] for o in names)


def generate(split: str = "train", seed: int = 0, n: int = 1000, level: int = 0, valid_fraction: float = 0.1,
             max_level: int = 3, ops: str = "", digits: int = 0) -> Iterator[dict]:
    """`n` records `{"prompt", "answer", "level", "expression", "task"}` of one split.

    `level=0` mixes levels 1..`max_level` evenly; a level from 1 to 5 fixes it. `ops` (e.g. "mul", "add,sub")
    replaces the levels' operations, e.g. `level=3&ops=mul`: two-digit numbers times one digit only; `digits`
    (1-3) replaces their operand size, e.g. `level=2&digits=3`: three-digit numbers plus a three-digit number or
    minus one up to their own size (a subtrahend is drawn from 0 to the running value, as at every level). The split
    still hashes the expression, so a problem held out here is held out of `builtin:instructions` too.
    """
    if level not in (0, *LEVELS):
        raise ValueError(f"level must be 0 (mixed) or one of {sorted(LEVELS)}, got {level}")
    if digits not in (0, 1, 2, 3):
        raise ValueError(f"digits must be 0 (each level's own) or 1 to 3, got {digits}")
    symbols = parse_ops(ops)
    rng = random.Random(f"arithmetic/{seed}")
    produced = 0
    while produced < n:
        lvl = level or rng.randint(1, max_level)
        shape = dataclasses.replace(LEVELS[lvl], ops=symbols or LEVELS[lvl].ops, digits=digits or LEVELS[lvl].digits)
        expr, value = expression(rng, shape)
        if not wanted(expr, split, valid_fraction):
            continue
        produced += 1
        yield {"prompt": rng.choice(PROMPTS).format(expr=expr), "answer": str(value), "level": lvl,
               "expression": expr, "task": "arithmetic"}
