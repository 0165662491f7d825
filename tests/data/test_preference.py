"""Preference data: rendering, truncation that keeps the end, drops counted, bad records refused, batches."""

from __future__ import annotations

import json

import pytest
import torch

from llmfs.data.preference import FIELDS, build_pairs, chosen_reply_targets, last_index, pad_rows, pair_batch
from llmfs.data.records import split_records
from llmfs.tokenizer.chat import prompt_messages
from llmfs.errors import DataError
from llmfs.tokenizer.byte import ByteTokenizer
from llmfs.tokenizer.chat import END, render, with_chat_tokens

TOK = with_chat_tokens(ByteTokenizer())
END_ID = TOK.special_tokens[END]


def rec(prompt="say hi", chosen="hi", rejected="no", **kw):
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, **kw}


def test_a_pair_renders_prompt_and_reply_through_the_chat_template():
    messages = [{"role": "user", "content": "say hi"}]
    pairs, counts = build_pairs([rec(defect="rude")], TOK, 64, source="s")
    assert pairs[0].chosen == tuple(render(TOK, [*messages, {"role": "assistant", "content": "hi"}]).ids)
    assert pairs[0].chosen[-1] == END_ID and pairs[0].rejected[-1] == END_ID
    assert (pairs[0].chosen_tokens, pairs[0].rejected_tokens, pairs[0].defect) == (2, 2, "rude")
    assert counts.total == 1 and counts.cut == 0
    # a message-list prompt is the same as its string form
    same, _ = build_pairs([rec(prompt=messages, defect="rude")], TOK, 64, source="s")
    assert same[0] == pairs[0]


def test_truncation_keeps_the_end_and_drops_pairs_made_identical():
    long_prompt = "x" * 100
    pairs, counts = build_pairs([rec(prompt=long_prompt, chosen="the answer is 4", rejected="the answer is 5"),
                                 rec(prompt="p", chosen="A long common tail", rejected="B long common tail")], TOK, 8, source="s")
    # first pair: the last 8 ids survive: "is 4" / "is 5" differ; the second pair's last 8 ids are the same
    assert len(pairs) == 1 and counts.cut == 1 and counts.identical_after_cut == 1
    assert len(pairs[0].chosen) == 8 and pairs[0].chosen[-1] == END_ID
    assert TOK.decode(list(pairs[0].chosen[:-1])) == "er is 4"
    assert TOK.decode(list(pairs[0].rejected[:-1])) == "er is 5"


def test_empty_and_identical_replies_are_counted_and_dropped():
    pairs, counts = build_pairs([rec(), rec(chosen="  "), rec(rejected="hi"), rec(chosen="yes")], TOK, 64, source="s")
    assert len(pairs) == 2 and (counts.total, counts.empty, counts.identical) == (4, 1, 1)
    with pytest.raises(DataError, match="none of its 2 pairs is usable"):
        build_pairs([rec(chosen=""), rec(rejected="hi")], TOK, 64, source="s")


@pytest.mark.parametrize("record, message", [
    ({"prompt": "q", "chosen": "a"}, "record 0: has no 'rejected'"),
    (rec(prompt=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]),
     "record 0: a prompt must end with a user message"),
    (rec(prompt=""), r"record 0: message 0 \(user\) has empty content"),
    (rec(chosen=3), "record 0: 'chosen' must be a string"),
])
def test_bad_records_are_one_line_errors_naming_the_record(record, message):
    with pytest.raises(DataError, match=message) as e:
        build_pairs([record], TOK, 64, source="prefs.jsonl")
    assert str(e.value).startswith("prefs.jsonl record 0") and "\n" not in str(e.value)


def test_per_pair_margin_field():
    pairs, _ = build_pairs([rec(strength=2)], TOK, 64, source="s", margin_field="strength")
    assert pairs[0].margin == 2.0
    with pytest.raises(DataError, match="margin_field 'strength' must be a number"):
        build_pairs([rec()], TOK, 64, source="s", margin_field="strength")


def test_string_prompt_is_one_user_turn():
    assert prompt_messages("hi", "w") == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("side", ["right", "left"])
def test_last_index_reads_each_rows_last_real_token(side):
    rows = [(5, 6, 7), (8,), (1, 2, 3, 4, 9)]
    ids, mask = pad_rows(rows, pad_id=0, side=side)
    index = last_index(mask)
    assert ids[torch.arange(3), index].tolist() == [7, 8, 9]
    assert index.tolist() == ([2, 0, 4] if side == "right" else [4, 4, 4])


def test_pair_batch_puts_chosen_rows_first():
    pairs, _ = build_pairs([rec(chosen="long reply"), rec(chosen="ok", rejected="bad one")], TOK, 64, source="s")
    ids, index, margins = pair_batch(pairs, pad_id=0)
    assert ids.shape[0] == 4 and margins.shape == (2,)
    assert (ids[torch.arange(4), index] == END_ID).all()
    assert tuple(ids[0, :len(pairs[0].chosen)].tolist()) == pairs[0].chosen
    assert tuple(ids[3, :len(pairs[1].rejected)].tolist()) == pairs[1].rejected


def test_chosen_reply_targets_are_the_reply_ids_shifted_left():
    pairs, _ = build_pairs([rec(chosen="hi"), rec(prompt="hello there", chosen="yes", rejected="no")], TOK, 64,
                           source="s")
    ids, _, _ = pair_batch(pairs, pad_id=0)
    targets = chosen_reply_targets(pairs, ids.shape[1])
    for k, reply in enumerate(("hi", "yes")):
        n = len(pairs[k].chosen)
        want = [-100] * ids.shape[1]
        want[n - len(reply) - 2:n - 1] = [*reply.encode(), END_ID]  # predicted from the position before each id
        assert targets[k].tolist() == want
        picked = targets[k] != -100  # the ids they predict are the next ones in the chosen row
        assert (ids[k, 1:][picked[:-1]] == targets[k][picked]).all()
    # a cut that removes the start of the reply keeps the rest as targets, from position 0
    cut, _ = build_pairs([rec(chosen="a long reply", rejected="no")], TOK, 8, source="s")
    t = chosen_reply_targets(cut, 8)
    assert t[0].tolist() == [*b"g reply", END_ID][1:] + [-100]


def test_records_from_a_jsonl_file_with_field_mapping_and_a_hash_split(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps({"question": f"q{i}", "better": "a", "worse": "b"}) + "\n" for i in range(200)))
    kw = dict(required=FIELDS, fields={"prompt": "question", "chosen": "better", "rejected": "worse"},
              valid_fraction=0.1, cache_dir=tmp_path, seed=0)
    train, name = split_records(str(path), "", "train", **kw)
    valid, _ = split_records(str(path), "", "valid", **kw)
    assert len(train) + len(valid) == 200 and 5 < len(valid) < 40 and name.endswith("(train)")
    assert {"prompt", "chosen", "rejected"} <= train[0].keys()
    with pytest.raises(DataError, match="no 'chosen'"):
        split_records(str(path), "", "train", **{**kw, "fields": {"prompt": "question"}})


def test_builtin_preferences_load_with_their_defects():
    records, _ = split_records("builtin:preferences?n=20", "", "valid", required=FIELDS, valid_fraction=0.05)
    pairs, counts = build_pairs(records, TOK, 256, source="b")
    assert len(pairs) == 20 and all(p.defect for p in pairs)
