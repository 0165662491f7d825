"""SFT data: conversations -> rendered examples -> padded or packed batches, with truncation counted.

Records hold `messages` (a conversation) or Alpaca's `instruction` / `input` / `output`; both go through the one
chat template (`llmfs/tokenizer/chat.py`). A rendered conversation longer than `seq_len + 1` ids (inputs plus the
shifted targets) is cut at the end: if it still holds a target it is kept and counted as `cut`; if the cut took
every target (the whole answer) it is dropped and counted as `dropped`, never silently trained on as a prompt.

Batches (`x`, `y`, `segments`), all (rows, T):
- padded: one conversation per row, right-padded to the longest; `y` is -100 (ignored) off the mask and on pads.
- packed: conversations laid end to end in rows of `seq_len` (first fit, in the order given); `segments` numbers
  the conversations of a row (pads get their own id) so attention never crosses a boundary and positions restart
  at each conversation (`Transformer.forward(segment_ids=...)`): each conversation is computed exactly as alone.

The loss is the mean over every target token of the global batch (not a mean of per-row means), so padding and
packing give the same value (tests/data/test_sft.py).

Order: the examples of step `s` are a pure function of (seed, s) (`batch_indices`): epochs are concatenated, each
a fresh permutation of seed and epoch, so a resumed run sees the same batches. `curriculum = "length"` or
`"difficulty"` replaces the first epoch's shuffle by an easy-to-hard order (shorter conversations, or a lower
value of the difficulty field, first; ties in shuffled order); later epochs are shuffled.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from llmfs.errors import DataError
from llmfs.tokenizer.chat import alpaca_to_messages, check_messages, render

IGNORE = -100  # target id that the loss skips (torch cross_entropy's default ignore_index)


@dataclasses.dataclass(frozen=True)
class Example:
    ids: tuple[int, ...]  # (T,), T <= seq_len + 1
    mask: tuple[bool, ...]  # (T,): True where ids[t] is a target
    task: str
    difficulty: float


@dataclasses.dataclass(frozen=True)
class Truncation:
    total: int  # records read
    cut: int  # kept, but shortened to seq_len + 1 ids
    dropped: int  # the cut removed every target: not trained on


def conversation(record: Mapping[str, Any], where: str) -> list[dict[str, str]]:
    """The checked conversation of a record (`messages`, or Alpaca fields)."""
    if "messages" in record:
        return check_messages(record["messages"], where)
    if "instruction" in record:
        return check_messages(alpaca_to_messages(record, where), where)
    raise DataError(f"{where}: a record needs 'messages' (a conversation) or Alpaca 'instruction' / 'output' "
                    f"fields (it has: {', '.join(sorted(record)) or 'none'})")


def render_examples(records: Iterable[Mapping[str, Any]], tokenizer, seq_len: int, *, source: str,
                    difficulty_field: str = "level") -> tuple[list[Example], Truncation]:
    """Render every record; cut those longer than seq_len + 1 ids, drop those left without a target."""
    examples, total, cut, dropped = [], 0, 0, 0
    for i, record in enumerate(records):
        total += 1
        where = f"{source} record {i}"
        ids, mask = render(tokenizer, conversation(record, where))
        if len(ids) > seq_len + 1:
            ids, mask = ids[:seq_len + 1], mask[:seq_len + 1]
            if not any(mask[1:]):  # position 0 is never predicted
                dropped += 1
                continue
            cut += 1
        difficulty = record.get(difficulty_field, 0)
        examples.append(Example(tuple(ids), tuple(mask), str(record.get("task", "")),
                                float(difficulty) if isinstance(difficulty, (int, float)) else 0.0))
    if total == 0:
        raise DataError(f"{source}: holds no records; give a non-empty dataset")
    if not examples:
        raise DataError(f"{source}: every one of the {total} conversations lost its whole answer to truncation "
                        f"at {seq_len} tokens; raise data.seq_len")
    return examples, Truncation(total, cut, dropped)


def _targets(ex: Example) -> list[int]:
    """Next-token targets of ids[:-1]: ids[t + 1] where it is a target, else IGNORE."""
    return [i if m else IGNORE for i, m in zip(ex.ids[1:], ex.mask[1:])]


def pad_batch(examples: list[Example], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, None, torch.Tensor]:
    """x, y (B, T) with T = the longest example's inputs; pads after each conversation. The last item, keep
    (B, T) bool, is False at the pads (an MoE model does not route them: `token_mask`)."""
    T = max(len(e.ids) for e in examples) - 1
    x = torch.full((len(examples), T), pad_id, dtype=torch.long)
    y = torch.full((len(examples), T), IGNORE, dtype=torch.long)
    keep = torch.zeros((len(examples), T), dtype=torch.bool)
    for r, e in enumerate(examples):
        n = len(e.ids) - 1
        x[r, :n] = torch.tensor(e.ids[:-1])
        y[r, :n] = torch.tensor(_targets(e))
        keep[r, :n] = True
    return x, y, None, keep


def pack_batch(examples: list[Example], seq_len: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                              torch.Tensor, torch.Tensor]:
    """x, y, segments, keep (R, seq_len): conversations placed first fit into as few rows as that gives; keep is
    False on each row's pad tail."""
    rows: list[list[Example]] = []
    space: list[int] = []
    for e in examples:
        n = len(e.ids) - 1
        r = next((k for k, s in enumerate(space) if s >= n), None)
        if r is None:
            rows.append([])
            space.append(seq_len)
            r = len(rows) - 1
        rows[r].append(e)
        space[r] -= n
    x = torch.full((len(rows), seq_len), pad_id, dtype=torch.long)
    y = torch.full((len(rows), seq_len), IGNORE, dtype=torch.long)
    seg = torch.zeros((len(rows), seq_len), dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for k, e in enumerate(row):
            n = len(e.ids) - 1
            x[r, at:at + n] = torch.tensor(e.ids[:-1])
            y[r, at:at + n] = torch.tensor(_targets(e))
            seg[r, at:at + n] = k
            at += n
        seg[r, at:] = len(row)  # the pad tail is a segment of its own
    keep = seg < torch.tensor([len(row) for row in rows])[:, None]  # (R, seq_len) False on the pad tail
    return x, y, seg, keep


def batch_indices(step: int, batch_size: int, n: int, seed: int, first_epoch: np.ndarray | None = None
                  ) -> np.ndarray:
    """Indices of the `batch_size` examples of `step` (a pure function of its arguments; see module doc)."""
    out = np.empty(batch_size, dtype=np.int64)
    for k, flat in enumerate(range(step * batch_size, (step + 1) * batch_size)):
        epoch, pos = divmod(flat, n)
        if epoch == 0 and first_epoch is not None:
            out[k] = first_epoch[pos]
        else:
            out[k] = _permutation(seed, epoch, n)[pos]
    return out


@functools.lru_cache(maxsize=4)  # a step reads one or two epochs' permutations; recomputing each is O(n)
def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def curriculum_order(examples: list[Example], kind: str, seed: int) -> np.ndarray | None:
    """The first epoch's order for a curriculum ("none" | "length" | "difficulty"), or None for a shuffle."""
    if kind == "none":
        return None
    shuffled = _permutation(seed, 0, len(examples))
    key = (lambda i: len(examples[i].ids)) if kind == "length" else (lambda i: examples[i].difficulty)
    return np.array(sorted(shuffled, key=key), dtype=np.int64)  # stable: ties keep the shuffled order
