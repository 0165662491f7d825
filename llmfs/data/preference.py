"""Preference data: `prompt, chosen, rejected` records -> rendered, truncated pairs -> padded batches.

Records come from any source `iter_records` reads (`builtin:preferences`, `.jsonl` / `.parquet` files and folders,
hub names), with `fields` mapping the canonical names to other columns. `prompt` is a string (one user turn) or
a message list ending with a user turn (the conversation so far); `chosen` and `rejected` are the two replies.

Each reply is scored on `prompt + reply` rendered with the chat template (`llmfs/tokenizer/chat.py`), which ends
with the reply's `<|end|>`: the reward head reads that last position (`llmfs/align/reward.py`).

Truncation keeps the END: two replies to one prompt differ in the reply, usually at its end, and the scored token
is the last one, so a rendering longer than `seq_len` loses ids from the left (the start of the prompt first) and
always keeps the final `<|end|>`. What is dropped, and counted (`PairCounts`), never silently trained on:
- `empty`: a reply with no non-space text;
- `identical`: chosen == rejected (no preference to learn);
- `identical_after_cut`: two replies whose last `seq_len` ids are the same (they differ only in a part the cut
  removed).
A record without the three fields, or with a malformed prompt, is refused with a one-line DataError naming it.

Batches: each pair is two rows, the chosen replies first then the rejected ones, padded on the right; the head
reads each row at its last real index (`last_index`, which works for left padding as well).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from llmfs.errors import DataError
from llmfs.tokenizer.chat import prompt_messages, render

FIELDS = ("prompt", "chosen", "rejected")


@dataclasses.dataclass(frozen=True)
class Pair:
    chosen: tuple[int, ...]  # (Tc,) ids of prompt + chosen reply, ending with <|end|>, Tc <= seq_len
    rejected: tuple[int, ...]  # (Tr,)
    chosen_tokens: int  # tokens of the chosen reply alone (before any cut): the length-bias statistic
    rejected_tokens: int
    defect: str  # the record's `defect` ("" when absent)
    margin: float  # per-pair margin (`margin_field`), else 0


@dataclasses.dataclass(frozen=True)
class PairCounts:
    total: int  # records read
    cut: int  # kept, with at least one side cut to seq_len ids
    empty: int  # dropped: a reply is empty
    identical: int  # dropped: chosen == rejected
    identical_after_cut: int  # dropped: the cut made the two sides the same ids


def render_reply(tokenizer, messages: list[dict[str, str]], reply: str, seq_len: int) -> tuple[list[int], bool]:
    """(ids, cut): prompt + reply through the chat template, its last `seq_len` ids when longer (see module doc)."""
    ids = render(tokenizer, [*messages, {"role": "assistant", "content": reply}]).ids
    return (ids[-seq_len:], True) if len(ids) > seq_len else (ids, False)


def build_pairs(records: Iterable[Mapping[str, Any]], tokenizer, seq_len: int, *, source: str,
                margin_field: str = "") -> tuple[list[Pair], PairCounts]:
    """Render every record into a Pair; count and drop empty and identical ones (see module doc)."""
    pairs: list[Pair] = []
    total = cut = empty = identical = same_after_cut = 0
    for i, record in enumerate(records):
        total += 1
        where = f"{source} record {i}"
        missing = [f for f in FIELDS if f not in record]
        if missing:
            raise DataError(f"{where}: has no {', '.join(repr(m) for m in missing)} (a preference record needs "
                            f"prompt, chosen and rejected; it has: {', '.join(sorted(record)) or 'none'})")
        messages = prompt_messages(record["prompt"], where)
        chosen, rejected = record["chosen"], record["rejected"]
        for name, reply in (("chosen", chosen), ("rejected", rejected)):
            if not isinstance(reply, str):
                raise DataError(f"{where}: '{name}' must be a string, got {type(reply).__name__}")
        if not chosen.strip() or not rejected.strip():
            empty += 1
            continue
        if chosen == rejected:
            identical += 1
            continue
        c_ids, c_cut = render_reply(tokenizer, messages, chosen, seq_len)
        r_ids, r_cut = render_reply(tokenizer, messages, rejected, seq_len)
        if c_ids == r_ids:
            same_after_cut += 1
            continue
        cut += c_cut or r_cut
        margin = 0.0
        if margin_field:
            value = record.get(margin_field)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DataError(f"{where}: reward.margin_field '{margin_field}' must be a number, got {value!r}")
            margin = float(value)
        pairs.append(Pair(tuple(c_ids), tuple(r_ids), len(tokenizer.encode_ordinary(chosen)),
                          len(tokenizer.encode_ordinary(rejected)), str(record.get("defect") or ""), margin))
    counts = PairCounts(total, cut, empty, identical, same_after_cut)
    if total == 0:
        raise DataError(f"{source}: holds no records; give a non-empty preference dataset")
    if not pairs:
        raise DataError(f"{source}: none of its {total} pairs is usable ({empty} with an empty reply, {identical} "
                        f"with chosen == rejected, {same_after_cut} identical after the cut to {seq_len} ids)")
    return pairs, counts


# ------------------------------------------------------------------------------------------------ batches
def pad_rows(rows: list[tuple[int, ...]], pad_id: int, *, side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """ids (N, T) and mask (N, T) (True on real ids), T = the longest row; pads on `side` ("right" | "left")."""
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.bool)
    for k, r in enumerate(rows):
        at = slice(0, len(r)) if side == "right" else slice(T - len(r), T)
        ids[k, at] = torch.tensor(r, dtype=torch.long)
        mask[k, at] = True
    return ids, mask


def last_index(mask: torch.Tensor) -> torch.Tensor:
    """(N, T) bool -> (N,) index of each row's last True: T - 1 for left padding, length - 1 for right."""
    T = mask.shape[1]
    return T - 1 - mask.flip(1).long().argmax(1)


def reply_start(length: int, reply_tokens: int) -> int:
    """The position of the first reply id in a rendering of `length` ids that ends with a reply of `reply_tokens`
    ids and its `<|end|>`; at least 1 (a cut may have removed the reply's start; position 0 predicts nothing)."""
    return max(1, length - reply_tokens - 1)


def pair_starts(pairs: list[Pair]) -> torch.Tensor:
    """(2B,) the first reply position of each row of `pair_batch` (chosen rows, then rejected rows)."""
    return torch.tensor([reply_start(len(p.chosen), p.chosen_tokens) for p in pairs]
                        + [reply_start(len(p.rejected), p.rejected_tokens) for p in pairs], dtype=torch.long)


def pair_batch(pairs: list[Pair], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids (2B, T) (chosen rows, then rejected rows, right-padded), index (2B,) of each last id, margins (B,)."""
    ids, mask = pad_rows([p.chosen for p in pairs] + [p.rejected for p in pairs], pad_id)
    return ids, last_index(mask), torch.tensor([p.margin for p in pairs], dtype=torch.float32)


def chosen_reply_targets(pairs: list[Pair], T: int) -> torch.Tensor:
    """(B, T) next-token targets of the chosen rows of `pair_batch` (T = its width): at position t the id at t + 1
    when that id is part of the chosen reply (its text and `<|end|>`, the rendering's suffix), else -100, which
    `F.cross_entropy` ignores. For `reward.lm_coef` (`llmfs/train/reward.py`)."""
    targets = torch.full((len(pairs), T), -100, dtype=torch.long)
    for k, p in enumerate(pairs):
        n = len(p.chosen)
        start = reply_start(n, p.chosen_tokens)
        targets[k, start - 1:n - 1] = torch.tensor(p.chosen[start:], dtype=torch.long)
    return targets
