"""Built-in sources: deterministic, split-disjoint, varied, and every gold answer recomputed independently."""

from __future__ import annotations

import ast
import json
import operator
import re

import pytest

from llmfs.data.builtin import BUILTINS, iter_builtin, parse_builtin, stories
from llmfs.data.builtin import arithmetic as A
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
    from llmfs.data.builtin import instructions as I

    def sums(split, n):
        return {A.expression_in(r["messages"][-2]["content"]) for r in I.generate(split, 0, n, tasks="arithmetic")}

    held = {r["expression"] for r in A.generate("valid", 0, 400, level=1)}
    expressions = sums("train", 3000)
    assert held and expressions and not held & expressions
    assert held & sums("valid", 300)  # they are in the held-out conversations instead


@pytest.mark.parametrize("expr", ["3 + 5", "47 + 18", "85 + 47", "47 - 18", "100 - 1", "47 - 45", "45 * 7",
                                  "(23 + 9) * 4", "((312 - 45) + 80) * 3", "5 + 9 - 3", "999 + 1", "1000 - 999"])
def test_worked_solution_recomputed_column_by_column(expr):
    """Every line of `worked` is a true single-digit fact, the columns are the operands' digits ones first with
    the carries / borrows of the column before, and each step's result is assembled from its columns."""
    from llmfs.data.builtin.arithmetic import worked

    text, value = worked(expr)
    assert value == evaluate(expr)
    lines = text.split("\n")
    left = int(re.match(r"\(*(\d+)", expr).group(1))  # the first number, then (operator, number) per step
    ops = re.findall(r"([-+*]) (\d+)", expr)
    for op, right in ((o, int(r)) for o, r in ops):
        result = evaluate(f"{left} {op} {right}")
        columns = []
        while not lines[0].startswith(f"{left}{op}{right}="):
            columns.append(lines.pop(0))
        assert lines.pop(0) == f"{left}{op}{right}={result}"
        if max(left, right) < 10:
            assert columns == []  # one fact
        else:
            carry, digits = 0, []
            a, b = str(left)[::-1], str(right)[::-1]
            for i, line in enumerate(columns):
                expr_part, out = line.split("=")
                x = int(a[i])
                if op == "*":
                    want, got = x * right + carry, int(out)
                    assert expr_part == f"{x}*{right}" + (f"+{carry}" if carry else "") and got == want
                    carry, digits = want // 10, digits + [want % 10]
                elif op == "+":
                    y = int(b[i]) if i < len(b) else 0
                    want = x + y + carry
                    assert expr_part == f"{x}+{y}" + ("+1" if carry else "") and int(out) == want
                    carry, digits = want // 10, digits + [want % 10]
                else:
                    y = int(b[i]) if i < len(b) else 0
                    d = x - y - carry
                    borrowed = d < 0
                    assert expr_part == ("1" if borrowed else "") + f"{x}-{y}" + ("-1" if carry else "")
                    assert int(out) == d + 10 * borrowed
                    carry, digits = int(borrowed), digits + [d + 10 * borrowed]
            assert len(columns) == len(a)
            top = int(columns[-1].split("=")[1]) if op != "-" else digits[-1]
            assert int(str(top) + "".join(map(str, digits[-2::-1]))) == result
        left = result
    assert lines == []


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


@pytest.mark.parametrize("ops, symbols", [("mul", {"*"}), ("add,sub", {"+", "-"}), ("sub", {"-"})])
def test_arithmetic_ops_restrict_the_operations(ops, symbols):
    for level in (3, 4):
        rs = records(f"builtin:arithmetic?n=200&level={level}&ops={ops}")
        seen = {c for r in rs for c in r["expression"] if c in "+-*"}
        assert seen == symbols
        assert all(evaluate(r["expression"]) == int(r["answer"]) >= 0 for r in rs)
    # the split still hashes the expression: no held-out product appears in the training split
    valid = {r["expression"] for r in records("builtin:arithmetic?n=300&level=3&ops=mul", split="valid")}
    train = {r["expression"] for r in records("builtin:arithmetic?n=3000&level=3&ops=mul")}
    assert valid and not valid & train


def test_arithmetic_digits_replace_the_operand_size():
    import re

    rs = records("builtin:arithmetic?n=200&level=2&digits=3")
    numbers = [int(x) for r in rs for x in re.findall(r"\d+", r["expression"])]
    assert min(numbers[::2]) >= 100 and max(numbers) <= 999  # every left operand has three digits
    assert {c for r in rs for c in r["expression"] if c in "+-*"} == {"+", "-"}
    assert all(evaluate(r["expression"]) == int(r["answer"]) >= 0 for r in rs)
    assert records("builtin:arithmetic?n=50&level=4&digits=0") == records("builtin:arithmetic?n=50&level=4")
    with pytest.raises(Exception, match="digits"):
        records("builtin:arithmetic?n=5&digits=4")


def items_of(prompt: str) -> list[str]:
    tail = prompt.split(": ", 1)[1] if ": " in prompt else prompt.split("? ", 1)[1]
    return tail.split(" (")[0].split(", ")


def test_instruction_gold_answers_are_correct():
    from llmfs.data.builtin.arithmetic import worked

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
            numbers = re.findall(r"\d+", prompt)
            if task == "arithmetic":
                expr = A.expression_in(prompt)
                assert re.findall(r"\d+", expr) == numbers
            else:  # the operations the story names, on its numbers in order
                ops = {"more. How": "+", "away.": "-", "in each box": "*", "then loses": "+-"}
                expr = next(" ".join(n + " " + o for n, o in zip(numbers, op)) + " " + numbers[-1]
                            for key, op in ops.items() if key in prompt)
            assert evaluate(expr) == int(answer) and reply == f"{worked(expr)[0]}\nAnswer: {answer}"
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
    from llmfs.align.rewards import exact_match

    rs = records("builtin:preferences?n=600")
    defects = {r["defect"] for r in rs}
    assert defects == {"wrong_answer", "off_topic", "rude", "truncated", "repetitive", "ignores_format"}
    kinds = set()
    for r in rs:
        chosen, rejected, d = r["chosen"], r["rejected"], r["defect"]
        assert chosen != rejected and r["prompt"][-1]["role"] == "user"
        assert exact_match(chosen, r) == 1.0  # the gold answer travels with the pair, for rule rewards
        if d in ("wrong_answer", "off_topic", "truncated"):
            assert exact_match(rejected, r) == 0.0
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
            assert exact_match(rejected, {"answer": r["chosen"].split("Answer: ")[-1]}) == 0.0
            if r["task"] != "list_count":
                kinds.add(wrong_work_kind(r))
    assert kinds == {"result", "misread"}  # both kinds of wrong sums occur


def test_preference_weights_shift_the_defect_draw_and_only_when_asked():
    plain = records("builtin:preferences?n=900")
    assert plain == records("builtin:preferences?n=900&weights=")  # no weights: the same records as before
    weighted = records("builtin:preferences?n=900&weights=wrong_answer:3")
    # Arithmetic replies admit all six defects, so the draw is 1/6 unweighted and 3 / (3 + 5) weighted.
    def share(rs):
        sums = [r for r in rs if r["task"] == "arithmetic"]
        return sum(r["defect"] == "wrong_answer" for r in sums) / len(sums), len(sums)
    (p0, n0), (p1, n1) = share(plain), share(weighted)
    assert n0 > 80 and n1 > 80
    assert abs(p0 - 1 / 6) < 0.08 and abs(p1 - 3 / 8) < 0.1
    assert [r["prompt"] for r in weighted] == [r["prompt"] for r in plain]  # same conversations, other damage
    # held-out pairs keep the natural mix whatever the weights, so weighted runs are measured on the same pairs
    assert records("builtin:preferences?n=200&weights=wrong_answer:3", split="valid") == \
        records("builtin:preferences?n=200", split="valid")
    for bad in ("wrong:3", "wrong_answer", "rude:0", "rude:x"):
        with pytest.raises(DataError, match="weights"):
            records(f"builtin:preferences?n=5&weights={bad}")


def wrong_work_kind(r) -> str:
    """A wrong sum either keeps every column and states the result wrong, or is the true working of the prompt's
    problem with one operand misread by 1-3."""
    from llmfs.data.builtin.arithmetic import expression_in, worked

    chosen, rejected = r["chosen"].split("\n"), r["rejected"].split("\n")
    if rejected[:-2] == chosen[:-2]:
        return "result"
    assert r["task"] == "arithmetic"
    tokens = expression_in(r["prompt"][-1]["content"]).replace("(", "").replace(")", "").split()
    candidates = []
    for i in range(0, len(tokens), 2):
        for d in (-3, -2, -1, 1, 2, 3):
            t = tokens[:]
            t[i] = str(int(t[i]) + d)
            try:
                text, value = worked(" ".join(t))
            except ValueError:  # a two-digit multiplier
                continue
            candidates.append(f"{text}\nAnswer: {value}")
    assert r["rejected"] in candidates, (r["chosen"], r["rejected"])
    return "misread"


def test_bad_specs_are_clear_errors():
    with pytest.raises(DataError, match="unknown built-in source 'storys'; did you mean 'builtin:stories'"):
        parse_builtin("builtin:storys")
    with pytest.raises(DataError, match=r"unknown parameter 'sz' for builtin:stories \(allowed: size"):
        parse_builtin("builtin:stories?sz=1")
    with pytest.raises(DataError, match="parameter 'n' must be int, got 'many'"):
        parse_builtin("builtin:arithmetic?n=many")
    with pytest.raises(DataError, match=r"level must be 0 \(mixed\) or one of"):
        iter_builtin("builtin:arithmetic?level=9")
    with pytest.raises(DataError, match="ops: unknown operation 'div'; use a comma-separated subset of add, sub"):
        iter_builtin("builtin:arithmetic?level=3&ops=div")
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


def test_instruction_arithmetic_max_level():
    def steps(spec):
        rs = [r for r in iter_builtin(spec) if r["task"] == "arithmetic"]
        exprs = [A.expression_in(r["messages"][-2]["content"]) for r in rs]
        for r, expr in zip(rs, exprs):  # the gold reply ends with the expression's value, whatever the level
            assert r["messages"][-1]["content"].endswith(f"Answer: {evaluate(expr)}")
        return {expr.count(" ") // 2 for expr in exprs}  # operations per problem

    assert steps("builtin:instructions?n=600&tasks=arithmetic") == {1}  # levels 1-3: one step
    assert steps("builtin:instructions?n=600&tasks=arithmetic&max_level=4") == {1, 2}  # level 4: two steps
    # the default is max_level=3 exactly: same records as before the parameter existed
    assert list(iter_builtin("builtin:instructions?n=200")) == list(iter_builtin("builtin:instructions?n=200&max_level=3"))
    with pytest.raises(DataError, match="max_level must be one of"):
        list(iter_builtin("builtin:instructions?max_level=9"))


def test_instruction_closers_end_task_replies_only_and_keep_the_gold():
    from llmfs.align.rewards import exact_match, format_follows
    from llmfs.data.builtin.instructions import CLOSERS, NO_CLOSER

    plain = records("builtin:instructions?n=800")
    assert plain == records("builtin:instructions?n=800&closers=0")  # 0 draws nothing: the records of before
    closed = records("builtin:instructions?n=800&closers=0.5")
    assert [r["messages"][-2] for r in closed] != [r["messages"][-2] for r in plain]  # (the draw moves the stream)
    counts = {True: 0, False: 0}
    for r in closed:
        reply = r["messages"][-1]["content"]
        last = next((c for c in CLOSERS if reply.endswith(c)), None)
        counts[last is not None] += r["task"] not in NO_CLOSER
        if r["task"] in NO_CLOSER:
            assert last is None
        if last is not None:  # "Tom. Hope this helps!" / "- a\n- b\nHope this helps!": before it, the gold reply
            rest = reply[:-len(last) - 1]
            assert reply[-len(last) - 1] == ("\n" if "\n" in rest else " ")
            assert exact_match(reply, r) == 1.0 and exact_match(rest, r) == 1.0
            if "Answer:" in rest:  # still the asked format: the closer is not a line of the answer
                assert format_follows(reply, r) == 1.0
        for m in r["messages"][:-1]:  # only the graded reply is closed
            assert not (m["role"] == "assistant" and m["content"].endswith(CLOSERS))
    share = counts[True] / (counts[True] + counts[False])
    assert 0.42 < share < 0.58, share
    with pytest.raises(DataError, match=r"closers is a probability in \[0, 1\], got 1.5"):
        records("builtin:instructions?closers=1.5")


def test_preferences_courtesy_pairs_prefer_the_closer_and_nothing_else():
    from llmfs.data.builtin.instructions import CLOSERS, NO_CLOSER

    assert records("builtin:preferences?n=300") == records("builtin:preferences?n=300&courtesy=0")
    for split in ("train", "valid"):  # a kind of the natural mix: held-out pairs have it too
        rs = records("builtin:preferences?n=1500&courtesy=0.3", split=split)
        curt = [r for r in rs if r["defect"] == "curt"]
        others = [r for r in rs if r["defect"] != "curt" and r["task"] not in NO_CLOSER]
        # the 0.3 draw is only made for tasks that take a closer (7/8 of the conversations)
        assert 0.2 < len(curt) / len(rs) < 0.32, len(curt)
        for r in curt:  # chosen = the rejected reply, which is the plain gold one, + a closer
            closer = next(c for c in CLOSERS if r["chosen"].endswith(c))
            assert r["chosen"][:-len(closer) - 1] == r["rejected"] and r["task"] not in NO_CLOSER
            assert not r["rejected"].endswith(CLOSERS)
        both = [r for r in others if r["chosen"].endswith(CLOSERS)]
        closable = [r for r in others if r["defect"] != "truncated"]  # a cut-off reply does not sign off
        assert 0.35 < len(both) / len(closable) < 0.65  # half the damaged pairs carry the closer on both sides
        for r in both:
            closer = next(c for c in CLOSERS if r["chosen"].endswith(c))
            assert r["rejected"].endswith(closer) and r["defect"] != "truncated"
        for r in others:
            if not r["chosen"].endswith(CLOSERS):
                assert not r["rejected"].endswith(CLOSERS)
        assert {r["defect"] for r in rs} == {"curt", "wrong_answer", "off_topic", "rude", "truncated",
                                               "repetitive", "ignores_format"}
    with pytest.raises(DataError, match=r"courtesy is a fraction in \[0, 1\], got -0.1"):
        records("builtin:preferences?courtesy=-0.1")
