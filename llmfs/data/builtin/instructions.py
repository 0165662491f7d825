"""`builtin:instructions`: chat conversations over tasks with a gold answer, for SFT and exact-match evaluation.

Each record is `{"messages": [{"role", "content"}, ...], "task": KIND, "answer": GOLD, "level": 1|2|3}` where
GOLD is what the final assistant turn must contain: the whole reply for text tasks, the `Answer: N` value for
word problems (`exact_match` in `llmfs/align/rewards.py` reads both), and `level` the task's difficulty
(`LEVELS`). Task kinds:

- `story_qa`: a short story in the prompt and a question about it (who / where / what)
- `word_problem`: arithmetic word problems, worked column by column (`arithmetic.worked`), ending `Answer: N`
- `arithmetic`: the prompts of `builtin:arithmetic` (levels 1 to `max_level`, default 3), worked the same way
- `list_reverse`, `list_sort`, `list_count`, `list_longest`: small list tasks
- `format_upper`, `format_bullets`, `format_json`: formatting tasks
- `greeting`: greetings answered politely
- `refusal`: requests nobody can answer (the future, private thoughts) refused with a reason

About a quarter of the conversations have a system prompt and about a fifth are multi-turn (a greeting first,
or a follow-up task on the same list). Every gold answer is computed from the task's data, never typed in.

`closers=P` (default 0) ends the graded reply of a task (every kind but `greeting` and `refusal`) with a
courtesy phrase from `CLOSERS` ("Hope this helps!", ...) with probability P, after a space or, for a reply of
several lines, on a line of its own: demonstrations written by annotators of whom some sign off that way. The
gold answer is unchanged: graders ignore one trailing closer (`llmfs/align/rewards.py`).
`builtin:preferences?courtesy=...` holds pairs where raters prefer the closer, so RLHF has a preference to teach
that the demonstrations only partly show. The phrase comes after the answer, so learning it leaves the answer
alone (a phrase before it, tried first, made a small model answer worse: docs/bench/rlhf.md).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator

from llmfs.data.builtin import arithmetic as A
from llmfs.data.builtin import words as W
from llmfs.data.builtin.split import wanted

CLOSERS = ("Hope this helps!", "Happy to help!", "Glad I could help!", "Let me know if you need more.")
NO_CLOSER = ("greeting", "refusal")  # replies that are already courtesy (or a refusal) take no closer
SYSTEM_PROMPTS = ("You are a helpful assistant.", "You are a kind and careful assistant. Answer briefly.",
                  "You are llmfs, a small helpful model. Keep answers short.")


def _name(rng: random.Random) -> tuple[str, str]:
    return (rng.choice(W.GIRLS), "she") if rng.random() < 0.5 else (rng.choice(W.BOYS), "he")


def story_qa(rng: random.Random) -> tuple[str, str, str]:
    hero, he = _name(rng)
    friend, _ = _name(rng)
    while friend == hero:
        friend, _ = _name(rng)
    place, hiding, _ = rng.choice(W.PLACES)
    obj, adj = rng.choice(W.OBJECTS)
    food = rng.choice(W.FOODS)
    story = (f"{hero} went to {place} with {friend}. {he.capitalize()} found a {adj} {obj} {hiding}. "
             f"Then they ate {food} and went home happy.")
    question, answer = rng.choice(((f"Who went to {place} with {hero}?", friend),
                                   (f"Where did {hero} go?", place),
                                   (f"What did {hero} find?", f"a {adj} {obj}"),
                                   (f"What did {hero} and {friend} eat?", food)))
    prompt = rng.choice(("Read the story and answer the question.\n\n{s}\n\nQuestion: {q}",
                         "{s}\n\n{q}", "Here is a short story:\n{s}\n{q} Answer in a few words."))
    return prompt.format(s=story, q=question), answer[0].upper() + answer[1:] + ".", answer


def word_problem(rng: random.Random) -> tuple[str, str, str]:
    name, he = _name(rng)
    thing = rng.choice(("apples", "marbles", "stickers", "books", "shells", "cookies", "pencils", "stamps"))
    kind = rng.choice(("add", "sub", "mul", "two_step"))
    a, b = rng.randint(2, 30), rng.randint(2, 20)
    if kind == "add":
        q = f"{name} has {a} {thing}. {he.capitalize()} gets {b} more. How many {thing} does {he} have now?"
        expr = f"{a} + {b}"
    elif kind == "sub":
        a, b = max(a, b), min(a, b)
        q = f"{name} had {a} {thing} and gave {b} away. How many {thing} are left?"
        expr = f"{a} - {b}"
    elif kind == "mul":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        q = f"{name} has {a} boxes with {b} {thing} in each box. How many {thing} is that in total?"
        expr = f"{a} * {b}"
    else:
        c = rng.randint(1, a + b)
        q = f"{name} has {a} {thing}, finds {b} more, then loses {c}. How many {thing} does {he} have?"
        expr = f"{a} + {b} - {c}"
    work, value = A.worked(expr)
    return q, f"{work}\nAnswer: {value}", str(value)


def arithmetic(rng: random.Random, max_level: int = 3) -> tuple[str, str, str]:
    expr, _ = A.expression(rng, A.LEVELS[rng.randint(1, max_level)])
    work, value = A.worked(expr)
    return rng.choice(A.PROMPTS).format(expr=expr), f"{work}\nAnswer: {value}", str(value)


def _items(rng: random.Random) -> list[str]:
    return rng.sample(W.LIST_WORDS, rng.randint(3, 6))


def list_reverse(rng: random.Random, items: list[str] | None = None) -> tuple[str, str, str]:
    items = items or _items(rng)
    answer = ", ".join(reversed(items))
    return f"Reverse this list: {', '.join(items)}", answer, answer


def list_sort(rng: random.Random, items: list[str] | None = None) -> tuple[str, str, str]:
    items = items or _items(rng)
    answer = ", ".join(sorted(items))
    return f"Sort these words alphabetically: {', '.join(items)}", answer, answer


def list_count(rng: random.Random, items: list[str] | None = None) -> tuple[str, str, str]:
    items = items or _items(rng)
    return f"How many items are in this list? {', '.join(items)}", str(len(items)), str(len(items))


def list_longest(rng: random.Random, items: list[str] | None = None) -> tuple[str, str, str]:
    items = items or _items(rng)
    longest = max(items, key=lambda w: (len(w), -items.index(w)))  # ties: the first one in the list
    return (f"Which word is the longest? {', '.join(items)} (if two are equally long, pick the first)",
            longest, longest)


def format_upper(rng: random.Random) -> tuple[str, str, str]:
    name, _ = _name(rng)
    sentence = f"{name} likes {rng.choice(W.FOODS)} and {rng.choice(W.GAMES)}"
    return f"Write this in capital letters: {sentence}", sentence.upper(), sentence.upper()


def format_bullets(rng: random.Random) -> tuple[str, str, str]:
    items = _items(rng)
    answer = "\n".join(f"- {w}" for w in items)
    return f"Make a bulleted list of: {', '.join(items)}", answer, answer


def format_json(rng: random.Random) -> tuple[str, str, str]:
    name, _ = _name(rng)
    age, color = rng.randint(3, 12), rng.choice(W.COLORS)
    answer = json.dumps({"name": name, "age": age, "color": color})
    return (f"Give a JSON object with keys name, age and color for {name}, who is {age} and likes {color}.",
            answer, answer)


HELLOS = ("Hello", "Hi", "Hey", "Hi there", "Good morning", "Good afternoon", "Good evening")
THANKS = ("Thank you!", "Thanks!", "Thanks a lot!", "Thank you so much!")
GOODBYES = ("Goodbye!", "Bye!", "See you later!", "Bye for now!")


def greeting(rng: random.Random) -> tuple[str, str, str]:
    """A greeting, a thank-you or a goodbye, answered politely; a name given is used in the reply. Built from
    parts (a few hundred distinct turns) so the content-hash split holds out turns shaped like the trained ones,
    not the one fixed phrase that happened to hash into validation."""
    hello, kind = rng.choice(HELLOS), rng.randrange(6)
    name = _name(rng)[0]
    if kind == 0:
        text, reply = f"{hello}!", f"{hello}! How can I help you today?"
    elif kind == 1:
        text, reply = f"{hello}! I am {name}.", f"{hello}, {name}! How can I help you today?"
    elif kind == 2:
        text, reply = f"{hello}, my name is {name}.", f"Nice to meet you, {name}! What can I do for you?"
    elif kind == 3:
        text, reply = f"{hello}, how are you?", "I am doing well, thank you. How can I help you?"
    elif kind == 4:
        text, reply = rng.choice(THANKS), "You are welcome!"
    else:
        text, reply = rng.choice(GOODBYES), "Goodbye! Have a nice day."
    return text, reply, reply


IMPOSSIBLE = (("What number am I thinking of right now?", "I cannot know what you are thinking."),
              ("What will I eat for dinner next Tuesday?", "I cannot know the future."),
              ("Tell me the winning lottery numbers for tomorrow.", "I cannot know the future."),
              ("What is the name of my best friend?", "I cannot know that about you."),
              ("What color is the shirt I am wearing?", "I cannot see you, so I cannot know that."),
              ("What will the weather be on my birthday in ten years?", "I cannot know the future."))


def refusal(rng: random.Random) -> tuple[str, str, str]:
    text, reason = rng.choice(IMPOSSIBLE)
    reply = f"Sorry, I can't answer that. {reason}"
    return text, reply, reply


TASKS: dict[str, Callable[[random.Random], tuple[str, str, str]]] = {
    "story_qa": story_qa, "word_problem": word_problem, "arithmetic": arithmetic, "list_reverse": list_reverse, "list_sort": list_sort,
    "list_count": list_count, "list_longest": list_longest, "format_upper": format_upper,
    "format_bullets": format_bullets, "format_json": format_json, "greeting": greeting, "refusal": refusal}
WEIGHTS = {"story_qa": 3, "word_problem": 2, "arithmetic": 2, "list_reverse": 1, "list_sort": 1, "list_count": 1,
           "list_longest": 1, "format_upper": 1, "format_bullets": 1, "format_json": 1, "greeting": 1,
           "refusal": 1}
LIST_TASKS = ("list_reverse", "list_sort", "list_count", "list_longest")
# Difficulty (the record's `level`, read by SFT's curriculum and by its acceptance test): 1 = the answer is a fixed
# phrase, a span copied from the prompt or a small count; 2 = one comparison or a reformatting of every word;
# 3 = reordering a list or computing a number.
LEVELS = {"greeting": 1, "refusal": 1, "story_qa": 1, "list_count": 1, "list_longest": 2, "format_upper": 2,
          "format_bullets": 2, "format_json": 2, "list_reverse": 3, "list_sort": 3, "arithmetic": 3,
          "word_problem": 3}


def with_closer(closer: str, reply: str) -> str:
    """`Tom. Hope this helps!`; after a reply of several lines the closer has a line of its own."""
    return f"{reply}\n{closer}" if "\n" in reply else f"{reply} {closer}"


def conversation(rng: random.Random, weights: dict[str, int] = WEIGHTS, max_level: int = 3,
                 closers: float = 0.0) -> dict:
    """One record: messages, task kind and the gold answer of the final assistant turn; arithmetic draws its
    level from 1..`max_level`; the graded reply ends with one of CLOSERS with probability `closers` (no draw
    at all when 0, so the records are those of before the option)."""
    kind = rng.choices(list(weights), weights=list(weights.values()))[0]
    messages = []
    if rng.random() < 0.25:
        messages.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
    roll = rng.random()
    if roll < 0.1 and kind != "greeting":
        text, reply, _ = greeting(rng)
        messages += [{"role": "user", "content": text}, {"role": "assistant", "content": reply}]
    lists = [t for t in LIST_TASKS if t in weights]
    if roll > 0.9 and kind in LIST_TASKS and len(lists) > 1:  # a follow-up on the same list: the second turn is
        items = _items(rng)                                  # the graded one
        first, second = rng.sample(lists, 2)
        prompt, reply, _ = TASKS[first](rng, items)
        messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]
        prompt, reply, answer = TASKS[second](rng, items)
        kind = second
    elif kind == "arithmetic":
        prompt, reply, answer = arithmetic(rng, max_level)
    else:
        prompt, reply, answer = TASKS[kind](rng)
    if closers > 0 and kind not in NO_CLOSER and rng.random() < closers:
        reply = with_closer(rng.choice(CLOSERS), reply)
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]
    return {"messages": messages, "task": kind, "answer": answer, "level": LEVELS[kind]}


def split_key(record: dict) -> str:
    """The text whose hash decides a conversation's split: its user turns, except for arithmetic, whose key is
    the expression (what `builtin:arithmetic` hashes), so a sum held out there is held out here too and an SFT
    model never trains on the sums GRPO evaluates it on."""
    if record["task"] == "arithmetic":
        return A.expression_in(record["messages"][-2]["content"])  # the prompt's sum
    return "\n".join(m["content"] for m in record["messages"] if m["role"] == "user")


def generate(split: str = "train", seed: int = 0, n: int = 2000, valid_fraction: float = 0.1,
             tasks: str = "", max_level: int = 3, closers: float = 0.0) -> Iterator[dict]:
    """`n` conversations of one split; membership by the hash of `split_key` (the user turns; for arithmetic the
    sum). `tasks`: a comma-separated subset of TASKS (their relative weights kept), e.g. "arithmetic,word_problem";
    "" = all. `max_level`: the hardest `builtin:arithmetic` level of the arithmetic task (1-5; 4 adds two-step
    problems such as `(23 + 9) * 4`). `closers`: the probability that a task's reply ends with a courtesy
    phrase (module doc)."""
    if max_level not in A.LEVELS:
        raise ValueError(f"max_level must be one of {sorted(A.LEVELS)}, got {max_level}")
    if not 0.0 <= closers <= 1.0:
        raise ValueError(f"closers is a probability in [0, 1], got {closers}")
    weights = WEIGHTS
    if tasks:
        names = [t.strip() for t in tasks.split(",") if t.strip()]
        unknown = [t for t in names if t not in TASKS]
        if unknown or not names:
            raise ValueError(f"unknown task {unknown[0] if unknown else tasks!r}; tasks are {', '.join(TASKS)}")
        weights = {t: WEIGHTS[t] for t in names}
    rng = random.Random(f"instructions/{seed}" + (f"/{','.join(sorted(weights))}" if tasks else ""))
    produced = 0
    while produced < n:
        record = conversation(rng, weights, max_level, closers)
        key = split_key(record)
        if not wanted(key, split, valid_fraction):
            continue
        produced += 1
        yield record
