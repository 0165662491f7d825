"""Scoring a chat model against gold answers: greedy replies to held-out prompts, exact match and token F1.

Each held-out conversation is cut before its last assistant turn; the model answers that prompt greedily
(`render_prompt`, stop at `<|end|>`), and the reply is scored against the record's `answer` (or, without one,
the reference reply) with `exact_match` and `token_f1` (`llmfs/align/rewards.py`). Reported overall and per task
kind, with `stop_rate`: the share of replies that ended with the end-of-turn token instead of running out of
tokens (a model that never learned to stop scores low here whatever its answers).

Room: a question may use at most `max_new_tokens` new tokens and never run past the context, so its room is
min(max_new_tokens, context - prompt length). A question is kept when its reference reply (and `<|end|>`) fits in
that room: a long prompt with a short answer (a story question) is asked, and an answer longer than the room
(never reachable, scored 0 whatever the model does) is not. `score_answers` generates each room in its own
batches, so a row is never cut shorter than its own room because a neighbour's prompt was longer.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch

from llmfs.align.rewards import exact_match, token_f1
from llmfs.infer.generate import generate
from llmfs.infer.sampling import SamplingConfig
from llmfs.tokenizer.chat import end_id, render_prompt


class Question(NamedTuple):
    prompt: list[int]  # ids of the conversation so far + <|assistant|>
    example: dict[str, Any]  # {"answer": ...} for the reward functions
    task: str
    level: int | None  # the record's difficulty, when it has one
    room: int | None = None  # the most new tokens for this question (None: score_answers' max_new_tokens)


def questions(conversations: Sequence[Sequence[Mapping[str, str]]], records: Sequence[Mapping[str, Any]],
              tokenizer, *, context: int, max_new_tokens: int) -> list[Question]:
    """Checked conversations (ending with an assistant turn) and their records -> the questions whose reference
    reply fits in their room (module doc)."""
    out = []
    for messages, record in zip(conversations, records):
        prompt = render_prompt(tokenizer, messages[:-1])
        room = min(max_new_tokens, context - len(prompt))
        if room < len(tokenizer.encode_ordinary(messages[-1]["content"])) + 1:  # the reply and <|end|>
            continue
        answer = record.get("answer", messages[-1]["content"])
        level = record.get("level")
        out.append(Question(prompt, {"answer": str(answer)}, str(record.get("task", "")) or "all",
                            level if isinstance(level, int) else None, room))
    return out


@torch.no_grad()
def score_answers(model: torch.nn.Module, tokenizer, items: Sequence[Question], *, max_new_tokens: int,
                  batch_size: int) -> dict[str, float]:
    """{"exact_match", "f1", "stop_rate", "exact_match/<task>", "f1/<task>", "exact_match/level<k>"} over
    `items` (greedy; each question's `room` when set, else `max_new_tokens`, in batches of one room each)."""
    end = end_id(tokenizer)
    em: dict[str, list[float]] = defaultdict(list)
    f1: dict[str, list[float]] = defaultdict(list)
    by_level: dict[int, list[float]] = defaultdict(list)
    stopped = 0
    by_room: dict[int, list[Question]] = defaultdict(list)
    for q in items:
        by_room[q.room or max_new_tokens].append(q)
    chunks = [(room, group[i:i + batch_size]) for room, group in sorted(by_room.items(), reverse=True)
              for i in range(0, len(group), batch_size)]
    for room, chunk in chunks:
        cfg = SamplingConfig(temperature=0.0, max_new_tokens=room)
        outs = generate(model, [q.prompt for q in chunk], cfg, stop_ids=[end])
        for q, ids in zip(chunk, outs):
            ended = bool(ids) and ids[-1] == end
            stopped += ended
            reply = tokenizer.decode(ids[:-1] if ended else ids)
            em[q.task].append(exact_match(reply, q.example))
            if q.level is not None:
                by_level[q.level].append(em[q.task][-1])
            f1[q.task].append(token_f1(reply, q.example))
    n = max(1, len(items))
    result = {"exact_match": sum(map(sum, em.values())) / n, "f1": sum(map(sum, f1.values())) / n,
              "stop_rate": stopped / n}
    for task in sorted(em):
        result[f"exact_match/{task}"] = sum(em[task]) / len(em[task])
        result[f"f1/{task}"] = sum(f1[task]) / len(f1[task])
    for level in sorted(by_level):
        result[f"exact_match/level{level}"] = sum(by_level[level]) / len(by_level[level])
    return result
