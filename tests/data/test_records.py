"""llmfs.data.records: every source kind, field mapping, up-front checks, row type checks, the datasets cache."""

from __future__ import annotations

import json

import pytest

from llmfs.data.records import BUILTIN_HINT, RECORD_KINDS, iter_records
from llmfs.errors import DataError

CHAT = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def parquet(path, rows):
    import datasets

    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path


@pytest.fixture()
def cache(tmp_path):
    return tmp_path / "hf_cache"


def test_builtin_honours_split_and_seed_and_every_kind_matches_a_builtin():
    a = list(iter_records("builtin:instructions?n=5", required=["messages"], seed=1))
    assert a == list(iter_records("builtin:instructions?n=5", required=["messages"], seed=1))
    assert a != list(iter_records("builtin:instructions?n=5", required=["messages"], seed=2))
    valid = list(iter_records("builtin:instructions?n=5", required=["messages"], split="valid", seed=1))
    assert not {json.dumps(r) for r in a} & {json.dumps(r) for r in valid}
    holds = {"stories": "text", "instructions": "messages", "preferences": "prompt chosen rejected",
             "arithmetic": "prompt answer"}  # what BUILTIN_HINT promises
    for name, names in holds.items():
        assert f"{name} ({names.replace(' ', ', ')})" in BUILTIN_HINT
        record = next(iter_records(f"builtin:{name}", required=names.split()))
        assert set(names.split()) <= set(record)
    assert {k for v in RECORD_KINDS.values() for k in v} <= {k for v in holds.values() for k in v.split()}
    with pytest.raises(DataError, match=r"builtin:stories: rows have no 'messages' field \(fields: text\); .* "
                                        r"instructions \(messages\)"):
        iter_records("builtin:stories", required=["messages"])


def test_jsonl_parquet_and_folder(tmp_path, cache):
    rows = [{"prompt": "q1", "chosen": "a", "rejected": "b", "id": 1},
            {"prompt": "q2", "chosen": "c", "rejected": "d", "id": 2}]
    need = ["prompt", "chosen", "rejected"]
    assert list(iter_records(jsonl(tmp_path / "p.jsonl", rows), required=need, cache_dir=cache)) == rows
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    parquet(tmp_path / "dir" / "sub" / "2.parquet", rows[1:])
    jsonl(tmp_path / "dir" / "1.jsonl", rows[:1])
    (tmp_path / "dir" / "README.md").write_text("# a dataset card: skipped")
    assert list(iter_records(tmp_path / "dir", required=need, cache_dir=cache)) == rows
    as_json = tmp_path / "p.json"
    as_json.write_text(json.dumps(rows))
    assert list(iter_records(as_json, required=need, cache_dir=cache)) == rows


def test_field_mapping_renames_and_keeps_other_columns(tmp_path, cache):
    f = jsonl(tmp_path / "gsm.jsonl", [{"question": "1+1?", "solution": "2", "level": 1}])
    records = list(iter_records(f, required=["prompt"], fields={"prompt": "question", "answer": "solution"},
                                cache_dir=cache))
    assert records == [{"prompt": "1+1?", "answer": "2", "level": 1}]
    with pytest.raises(DataError, match=r"gsm.jsonl: rows have no 'problem' column to use as 'prompt' "
                                        r"\(fields: question, solution, level\); fix the mapping: "
                                        r'set fields.prompt = "question"$'):
        iter_records(f, required=["prompt"], fields={"prompt": "problem"}, cache_dir=cache)


def test_missing_field_fails_up_front_before_any_record(tmp_path, cache, monkeypatch):
    f = jsonl(tmp_path / "q.jsonl", [{"question": "1+1?", "solution": "2"}])
    with pytest.raises(DataError) as e:
        iter_records(f, required=["prompt"], cache_dir=cache)  # raised by the call itself, not by iterating
    assert str(e.value) == (f"{f}: rows have no 'prompt' field (fields: question, solution); map a column to "
                            'it: set fields.prompt = "question"')
    with pytest.raises(DataError, match=r"'chosen' field .* --field chosen=<column>$"):
        iter_records(f, required=["chosen"], fields={"prompt": "question"}, cache_dir=cache,
                     hint="--field {name}={column}")


@pytest.mark.parametrize("row, message", [
    ({"messages": "hi"}, r"row 2: 'messages' must be a non-empty list of \{role, content\} dicts, got str 'hi'"),
    ({"messages": []}, r"row 2: 'messages' must be a non-empty list"),
    ({"messages": [{"from": "human", "value": "hi"}]},
     r"row 2: messages\[0\] must be a \{role, content\} dict, got from, value; convert"),
    ({"messages": [{"role": "human", "content": "hi"}]},
     r"row 2: messages\[0\] role 'human' is not one of system, user, assistant"),
    ({"messages": [{"role": "user", "content": None}]}, r"row 2: messages\[0\] content must be a string, got null"),
])
def test_bad_messages_name_the_file_and_row(tmp_path, cache, row, message):
    f = jsonl(tmp_path / "chat.jsonl", [{"messages": CHAT}, row])
    records = iter_records(f, required=["messages"], cache_dir=cache)
    assert next(records)["messages"] == CHAT
    with pytest.raises(DataError, match="chat.jsonl: " + message):
        next(records)


def test_bad_strings_name_the_row(tmp_path, cache):
    f = jsonl(tmp_path / "pref.jsonl", [{"prompt": "p", "chosen": ["a"], "rejected": "r"}])
    with pytest.raises(DataError, match=r"pref.jsonl: row 1: 'chosen' must be a string, got list \['a'\]"):
        iter_records(f, required=RECORD_KINDS["preference"], cache_dir=cache)
    ok = [{"prompt": CHAT[:1], "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "a", "rejected": "b"}]
    bad = {"prompt": [{"role": "robot", "content": "x"}], "chosen": "a", "rejected": "b"}
    records = iter_records(jsonl(tmp_path / "conv.jsonl", ok + [bad]), required=RECORD_KINDS["preference"],
                           cache_dir=cache)  # a prompt may be a string or the conversation so far
    assert [next(records), next(records)] == ok
    with pytest.raises(DataError, match=r"conv.jsonl: row 3: prompt\[0\] role 'robot' is not one of"):
        next(records)
    with pytest.raises(DataError, match=r"row 1: 'prompt' must be a string or a list of \{role, content\} dicts, "
                                        "got int 7"):
        iter_records(jsonl(tmp_path / "n.jsonl", [{"prompt": 7}]), required=["prompt"], cache_dir=cache)


def test_empty_missing_and_non_table_inputs(tmp_path, cache):
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(DataError, match="e.jsonl: holds no records"):
        iter_records(tmp_path / "e.jsonl", required=["prompt"], cache_dir=cache)
    with pytest.raises(DataError, match="nope.jsonl: input not found"):
        iter_records(tmp_path / "nope.jsonl", required=["prompt"], cache_dir=cache)
    (tmp_path / "t.txt").write_text("text")
    with pytest.raises(DataError, match=r"t.txt: records are read from .jsonl / .json / .parquet files, not '.txt'"):
        iter_records(tmp_path / "t.txt", required=["prompt"], cache_dir=cache)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "t.txt").write_text("text")
    with pytest.raises(DataError, match="d: folder holds no .jsonl / .json / .parquet files"):
        iter_records(tmp_path / "d", required=["prompt"], cache_dir=cache)
    f = jsonl(tmp_path / "p.jsonl", [{"prompt": "p"}])
    with pytest.raises(DataError, match="p.jsonl: a local file or folder holds one split, 'train', not 'valid'"):
        iter_records(f, required=["prompt"], split="valid", cache_dir=cache)
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(DataError, match=r"bad.jsonl: cannot read as json \("):
        iter_records(tmp_path / "bad.jsonl", required=["prompt"], cache_dir=cache)


def test_hub_dataset_through_datasets_with_split_config_and_cache(monkeypatch, cache):
    import datasets

    calls = []

    def fake_load(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        return iter([{"question": "1+1?", "answer": "2"}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    records = list(iter_records("openai/gsm8k?config=main", required=["prompt"], fields={"prompt": "question"},
                                split="test", cache_dir=cache))
    assert records == [{"prompt": "1+1?", "answer": "2"}]
    assert calls == [("openai/gsm8k", "main", {"split": "test", "streaming": True, "cache_dir": str(cache)})]
    # a split named in the spec wins: an explicit validation source reads its own split, not "train"
    list(iter_records("openai/gsm8k?config=main&split=test", required=["prompt"], fields={"prompt": "question"},
                      cache_dir=cache))
    assert calls[-1] == ("openai/gsm8k", "main", {"split": "test", "streaming": True, "cache_dir": str(cache)})
    # a dot in the name is a hub name ("teknium/OpenHermes-2.5"), a data file's ending is a missing local file
    list(iter_records("teknium/OpenHermes-2.5", required=["prompt"], fields={"prompt": "question"}, cache_dir=cache))
    assert calls[-1][:2] == ("teknium/OpenHermes-2.5", None)
    with pytest.raises(DataError, match=r"data/train.jsonl: input not found"):
        iter_records("data/train.jsonl", required=["prompt"], cache_dir=cache)
    with pytest.raises(DataError, match=r"hub dataset openai/gsm8k\?config=main: rows have no 'messages' field"):
        iter_records("openai/gsm8k?config=main", required=["messages"], cache_dir=cache)
    with pytest.raises(DataError, match=r"owner/x\?revision=1: unknown parameter 'revision' for a hub dataset"):
        iter_records("owner/x?revision=1", required=["prompt"], cache_dir=cache)


def test_offline_hub_name_says_how_to_use_a_local_file(monkeypatch, cache):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'owner/prefs' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as e:
        iter_records("owner/prefs", required=["prompt"], cache_dir=cache)
    assert str(e.value) == ("owner/prefs: not a local path, and loading it as a hub dataset (split 'train') failed "
                            "(ConnectionError: Couldn't reach 'owner/prefs' on the Hub (OfflineModeIsEnabled)); if "
                            "offline, download it elsewhere and pass the local .jsonl / .parquet file or folder "
                            "instead")


def test_local_files_write_only_to_the_given_cache_dir(tmp_path, monkeypatch):
    import datasets

    default = tmp_path / "hf_home" / "datasets"  # where datasets would write without an explicit cache_dir
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", default)
    f = jsonl(tmp_path / "p.jsonl", [{"prompt": "p"}])
    cache = tmp_path / "mine"
    assert list(iter_records(f, required=["prompt"], cache_dir=cache)) == [{"prompt": "p"}]
    assert not default.exists() or not any(default.iterdir())
    assert any(cache.iterdir())  # datasets' lock file landed where it was told


def test_a_later_row_or_file_without_the_field_names_its_row(tmp_path, cache):
    (tmp_path / "d").mkdir()
    jsonl(tmp_path / "d" / "1.jsonl", [{"prompt": "p"}])
    jsonl(tmp_path / "d" / "2.jsonl", [{"question": "q"}])
    records = iter_records(tmp_path / "d", required=["prompt"], cache_dir=cache)
    assert next(records) == {"prompt": "p"}
    with pytest.raises(DataError, match=r"2.jsonl: rows have no 'prompt' field \(fields: question\)"):
        next(records)
    from llmfs.data.records import _checked

    rows = iter([{"q": "a"}, {"x": "b"}])  # ragged rows straight from a reader
    checked = _checked(rows, "t", ["prompt"], {"prompt": "q"}, "")
    assert next(checked) == {"prompt": "a"}
    with pytest.raises(DataError, match=r"t: row 2: no 'q' column \(fields: x\)"):
        next(checked)
