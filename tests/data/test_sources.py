"""llmfs.data.sources: text files, folders, jsonl / parquet through `datasets`, bounded pieces, clear errors."""

from __future__ import annotations

import json

import pytest
import regex

from llmfs.data.sources import cut, iter_documents, iter_pieces
from llmfs.data.tables import expand as _expand
from llmfs.errors import DataError
from llmfs.tokenizer.patterns import PATTERNS


def test_text_file_documents_split_at_separator_lines(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("one\r\ntwo\n<|endoftext|>\n<|endoftext|>\nthree\n<|endoftext|>\nfour", encoding="utf-8")
    assert list(iter_documents([f])) == ["one\r\ntwo\n", "three\n", "four"]


def test_folder_is_read_recursively_in_sorted_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.txt").write_text("second")
    (tmp_path / "1.txt").write_text("first")
    (tmp_path / ".hidden.txt").write_text("skipped")
    assert list(iter_documents([tmp_path])) == ["first", "second"]


def test_long_documents_are_cut_at_pretoken_boundaries(tmp_path):
    lines = [f"{'  ' if i % 3 else ''}line {i}: ünïcode 12345, punct!?\n" + ("\n" if i % 4 == 0 else "")
             for i in range(400)]
    text = "".join(lines)
    f = tmp_path / "long.txt"
    f.write_text(text, encoding="utf-8")
    pieces = list(iter_pieces([f], max_chars=500))
    assert len(pieces) > 10 and all(not p.end for p in pieces[:-1]) and pieces[-1].end
    assert "".join(p.text for p in pieces) == text
    cuts = [p.text for p in cut(text, 300)]
    assert len(cuts) > 10 and "".join(cuts) == text
    for name, pattern in PATTERNS.items():  # pre-tokenizing the pieces == pre-tokenizing the whole
        r = regex.compile(pattern)
        for parts in ([p.text for p in pieces], cuts):
            assert [t for part in parts for t in r.findall(part)] == r.findall(text), name


def test_jsonl_and_parquet_through_datasets(tmp_path):
    rows = [{"text": "first doc", "id": 1}, {"text": "second\ndoc", "id": 2}]
    j = tmp_path / "d.jsonl"
    j.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    assert list(iter_documents([j], cache_dir=tmp_path / "c")) == ["first doc", "second\ndoc"]
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "n": [1, 2]}), p)
    assert list(iter_documents([p], cache_dir=tmp_path / "c")) == ["a", "b"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"content": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="bad.jsonl: rows have no 'text' field"):
        list(iter_documents([bad], cache_dir=tmp_path / "c"))


def test_missing_and_empty_inputs(tmp_path):
    with pytest.raises(DataError, match="nope.txt: input not found"):
        list(iter_pieces([tmp_path / "nope.txt"]))
    (tmp_path / "e.txt").write_text("")
    with pytest.raises(DataError, match="e.txt: input holds no text"):
        list(iter_pieces([tmp_path / "e.txt"]))
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(DataError, match="e.jsonl: input holds no text"):
        list(iter_pieces([tmp_path / "e.jsonl"]))


def test_hub_names_are_only_non_paths(tmp_path):
    assert _expand("roneneldan/TinyStories") == ["roneneldan/TinyStories"]
    for not_hub in ["./x/y", "data/x.txt", "nothing"]:
        with pytest.raises(DataError, match="input not found"):
            _expand(not_hub)


def test_builtin_sources_through_the_one_loader():
    from llmfs.data.builtin import iter_builtin
    from llmfs.data.sources import iter_documents

    docs = list(iter_documents(["builtin:stories?n=5"]))
    assert docs == [r["text"] for r in iter_builtin("builtin:stories?n=5")]
    with pytest.raises(DataError, match="unknown built-in source 'storys'"):
        list(iter_documents(["builtin:storys"]))
    with pytest.raises(DataError, match=r"builtin:arithmetic\?n=2: records have no 'text' field"):
        list(iter_documents(["builtin:arithmetic?n=2"]))


def test_offline_hub_name_says_how_to_use_a_local_file(monkeypatch, tmp_path):
    import datasets

    def offline(*args, **kwargs):  # what datasets raises offline (HF_DATASETS_OFFLINE=1 or no network)
        raise ConnectionError("Couldn't reach 'nobody/no-such-dataset' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="offline, download it elsewhere and pass the local"):
        list(iter_documents(["nobody/no-such-dataset"], cache_dir=tmp_path))


def test_text_field_of_tables_is_configurable(tmp_path):
    j = tmp_path / "d.jsonl"
    j.write_text(json.dumps({"story": "once", "id": 1}) + "\n", encoding="utf-8")
    assert list(iter_documents([j], field="story", cache_dir=tmp_path / "c")) == ["once"]
    with pytest.raises(DataError, match=r"d.jsonl: rows have no 'text' field \(fields: story, id\); map a column "
                                        r"to it: --field story$"):
        list(iter_documents([j], cache_dir=tmp_path / "c", hint="--field {column}"))
