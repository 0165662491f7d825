"""Built-in sources: deterministic, split-disjoint, varied, and every gold answer recomputed independently."""

from __future__ import annotations

import ast
import json
import operator
import re

import pytest

from llmfs.data.builtin import BUILTINS, iter_builtin, parse_builtin
from llmfs.data.builtin import stories
from llmfs.data.builtin.instructions import LEVELS
from llmfs.errors import DataError


def records(spec, split="train", seed=0):
    return list(iter_builtin(spec, split=split, seed=seed))


SPECS = ["builtin:stories?size=60000", "builtin:instructions?n=400", "builtin:preferences?n=300",
         "builtin:arithmetic?n=400"]


def key(spec, r):
    if spec.startswith("builtin:stories"):
        return r["text"]
    if spec.startswith("builtin:arithmetic"):
        return r["expression"]
    msgs = r["messages"] if "messages" in r else r["prompt"]
    return "\n".join(m["content"] for m in msgs if m["role"] == "user")


@pytest.mark.parametrize("spec", SPECS)
def test_same_seed_same_bytes_different_seed_different_data(spec):
    a = json.dumps(records(spec, seed=1))
    assert a == json.dumps(records(spec, seed=1))
    assert a != json.dumps(records(spec, seed=2))


@pytest.mark.parametrize("spec", SPECS)
def test_train_and_valid_share_no_example(spec):
    train = {key(spec, r) for r in records(spec)}
    valid = {key(spec, r) for r in records(spec, split="valid")}
    assert valid and train and not train & valid


def test_sft_conversations_never_hold_the_sums_grpo_holds_out():
    """builtin:instructions keys arithmetic conversations by their expression, as builtin:arithmetic does: the
    sums held out for GRPO's evaluation are held out of SFT too (before, 146 of 5146 leaked)."""
    from llmfs.data.builtin import arithmetic as A
    from llmfs.data.builtin import instructions as I

    held = {r["expression"] for r in A.generate("valid", 0, 400, level=1)}
    sft = [r for r in I.generate("train", 0, 3000, tasks="arithmetic")]
    expressions = {r["messages"][-1]["content"].split(" = ")[0] for r in sft}
    assert held and expressions and not held & expressions
    valid = {r["messages"][-1]["content"].split(" = ")[0] for r in I.generate("valid", 0, 300, tasks="arithmetic")}
    assert held & valid  # they are in the held-out conversations instead


def test_stories_size_and_shape():
    texts = [r["text"] for r in records("builtin:stories?size=50000")]
    valid = [r["text"] for r in records("builtin:stories?size=50000", split="valid")]
    total = sum(len(t) + 1 for t in texts + valid)  # size covers both splits; valid is ~5% of it
    assert 50000 <= total < 50000 + 2000 and 0 < len(valid) < len(texts) / 5
    assert len(records("builtin:stories?n=7")) == 7
    for t in texts[:50]:
        sentences = re.split(r"(?<=[.!?])\s+", t)
        assert 6 <= len(sentences) <= 20 and t[0].isupper() and t.endswith((".", "!", '"'))
    assert len({t.split()[0] for t in texts}) >= 4  # several kinds of opening
    # the grammar is varied: few exact duplicate sentences at this size
    sents = [s for t in texts for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"])", t)]
    assert 1 - len(set(sents)) / len(sents) < 0.2


def test_every_story_plot_is_reachable():
    assert len(stories.PLOTS) == 10
    seen = set()
    for i in range(400):
        seen.add(stories.story(0, i).count("."))
    assert len(seen) > 5


# ------------------------------------------------------------------------------ gold answers recomputed
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def evaluate(expr: str) -> int:
    """An independent evaluator: integers, + - * and parentheses only."""
    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        raise AssertionError(f"unexpected node in {expr}")
    return walk(ast.parse(expr, mode="eval"))


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_arithmetic_answers_are_correct(level):
    rs = records(f"builtin:arithmetic?n=300&level={level}")
    assert all(r["level"] == level for r in rs)
    for r in rs:
        assert evaluate(r["expression"]) == int(r["answer"]) >= 0
        assert r["expression"] in r["prompt"] and "Answer: N" in r["prompt"]
    assert max(int(r["answer"]) for r in rs) >= (10 if level == 1 else 100)


def items_of(prompt: str) -> list[str]:
    tail = prompt.split(": ", 1)[1] if ": " in prompt else prompt.split("? ", 1)[1]
    return tail.split(" (")[0].split(", ")


def test_instruction_gold_answers_are_correct():
    rs = records("builtin:instructions?n=1500")
    kinds = set()
    for r in rs:
        msgs, task, answer = r["messages"], r["task"], r["answer"]
        kinds.add(task)
        assert r["level"] == LEVELS[task]
        assert [m["role"] for m in msgs if m["role"] != "system"][::2] == ["user"] * ((len(msgs) - (
            msgs[0]["role"] == "system")) // 2)
        assert msgs[-1]["role"] == "assistant" and msgs[-2]["role"] == "user"
        prompt, reply = msgs[-2]["content"], msgs[-1]["content"]
        if task in ("word_problem", "arithmetic"):
            work, final = reply.split("\n")
            left, value = work.rsplit(" = ", 1)
            assert evaluate(left) == int(value) == int(answer) and final == f"Answer: {answer}"
            numbers = re.findall(r"\d+", prompt if task == "word_problem" else prompt.split("?")[0])
            assert re.findall(r"\d+", left) == numbers
        elif task == "list_reverse":
            assert answer == reply == ", ".join(items_of(prompt)[::-1])
        elif task == "list_sort":
            assert answer == reply == ", ".join(sorted(items_of(prompt)))
        elif task == "list_count":
            assert int(answer) == len(items_of(prompt))
        elif task == "list_longest":
            items = items_of(prompt)
            assert len(answer) == max(map(len, items)) and answer == next(w for w in items if len(w) == len(answer))
        elif task == "format_upper":
            assert answer == prompt.split(": ", 1)[1].upper()
        elif task == "format_bullets":
            assert answer.splitlines() == [f"- {w}" for w in items_of(prompt)]
        elif task == "format_json":
            obj = json.loads(answer)
            assert obj["name"] in prompt and f"is {obj['age']} " in prompt and prompt.endswith(f"{obj['color']}.")
        elif task == "story_qa":
            story = prompt
            assert answer in story and reply.lower().startswith(answer.lower())
            if prompt.count("Who went to"):
                hero = re.search(r"with (\w+)\?", prompt).group(1)
                assert re.search(rf"{hero} went to .* with {answer}\.", story)
        elif task in ("greeting", "refusal"):
            assert answer == reply and (task != "refusal" or reply.startswith("Sorry, I can't"))
    assert kinds == set(__import__("llmfs.data.builtin.instructions", fromlist=["TASKS"]).TASKS)
    assert any(len(r["messages"]) > 3 for r in rs) and any(r["messages"][0]["role"] == "system" for r in rs)


def test_preferences_have_labelled_real_defects():
    rs = records("builtin:preferences?n=600")
    defects = {r["defect"] for r in rs}
    assert defects == {"wrong_answer", "off_topic", "rude", "truncated", "repetitive", "ignores_format"}
    for r in rs:
        chosen, rejected, d = r["chosen"], r["rejected"], r["defect"]
        assert chosen != rejected and r["prompt"][-1]["role"] == "user"
        if d == "truncated":
            assert chosen.startswith(rejected) and len(rejected) < len(chosen)
        elif d == "repetitive":
            first = chosen.splitlines()[0]
            assert rejected.count(first) >= 3
        elif d == "rude":
            assert chosen in rejected
        elif d == "ignores_format" and r["task"] == "format_upper":
            assert rejected == chosen.lower()
        elif d == "wrong_answer" and r["task"] in ("word_problem", "arithmetic", "list_count"):
            from llmfs.align.rewards import exact_match

            assert exact_match(rejected, {"answer": r["chosen"].split("Answer: ")[-1]}) == 0.0


def test_bad_specs_are_clear_errors():
    with pytest.raises(DataError, match="unknown built-in source 'storys'; did you mean 'builtin:stories'"):
        parse_builtin("builtin:storys")
    with pytest.raises(DataError, match=r"unknown parameter 'sz' for builtin:stories \(allowed: size"):
        parse_builtin("builtin:stories?sz=1")
    with pytest.raises(DataError, match="parameter 'n' must be int, got 'many'"):
        parse_builtin("builtin:arithmetic?n=many")
    with pytest.raises(DataError, match=r"level must be 0 \(mixed\) or one of"):
        iter_builtin("builtin:arithmetic?level=9")
    with pytest.raises(DataError, match="split must be one of train, valid"):
        iter_builtin("builtin:stories", split="test")
    with pytest.raises(DataError, match="unknown task 'arithmatic'; tasks are story_qa"):
        iter_builtin("builtin:instructions?tasks=arithmatic")


def test_instruction_task_subset():
    records = list(iter_builtin("builtin:instructions?n=300&tasks=arithmetic,list_sort,list_count"))
    assert len(records) == 300 and {r["task"] for r in records} == {"arithmetic", "list_sort", "list_count"}
    everything = list(iter_builtin("builtin:instructions?n=300"))
    assert everything == list(iter_builtin("builtin:instructions?n=300&tasks="))  # "" = all, same records
    assert len({r["task"] for r in everything}) > 5
    assert set(BUILTINS) == {"stories", "instructions", "preferences", "arithmetic"}
