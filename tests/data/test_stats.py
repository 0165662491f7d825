"""Corpus statistics: hand-computed values on a tiny corpus, and the `llmfs data stats` command."""

from __future__ import annotations

import json

from llmfs.cli import main
from llmfs.data.stats import corpus_stats, record_text


def test_hand_computed_stats():
    corpus = ["The cat sat. The dog ran!", "The cat sat. A bird sang today.", "The cat sat. The dog ran!"]
    s = corpus_stats(corpus)
    # sentences: [The cat sat.] [The dog ran!] [The cat sat.]* [A bird sang today.] [The cat sat.]* [The dog ran!]*
    # (* = repeats an earlier sentence) -> 3 of 6 are duplicates; words per sentence 3,3,3,4,3,3
    assert s["records"] == 3 and s["sentences"] == 6 and s["words"] == 19
    assert s["duplicate_sentence_rate"] == 0.5 and s["duplicate_record_rate"] == round(1 / 3, 4)
    assert s["vocabulary"] == len({"the", "cat", "sat", "dog", "ran", "a", "bird", "sang", "today"})
    assert s["sentence_words_mean"] == round(19 / 6, 2) and s["sentence_words_max"] == 4
    assert s["characters"] == sum(map(len, corpus)) and s["bytes"] == s["characters"]
    assert corpus_stats([])["sentences"] == 0


def test_record_text_of_every_kind():
    assert record_text({"text": "hi"}) == "hi"
    assert record_text({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}) \
        == "a\nb"
    assert record_text({"prompt": [{"role": "user", "content": "q"}], "chosen": "c", "rejected": "r"}) == "q\nc\nr"
    assert record_text({"prompt": "What is 1 + 1?", "answer": "2"}) == "What is 1 + 1?"


def test_data_stats_command(capsys):
    assert main(["data", "stats", "builtin:stories?size=20000", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["source"] == "builtin:stories?size=20000" and info["characters"] >= 19000
    assert 0 <= info["duplicate_sentence_rate"] < 0.2 and info["vocabulary"] > 200
    assert main(["data", "stats", "builtin:stories?size=2000"]) == 0
    assert "duplicate_sentence_rate" in capsys.readouterr().out
    assert main(["data", "stats", "builtin:nope"]) == 2
    assert "unknown built-in source 'nope'" in capsys.readouterr().err


def test_data_stats_on_files_folders_tables_and_record_kinds(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("The cat sat.\n<|endoftext|>\nThe dog ran. The dog ran.\n")
    (tmp_path / "docs" / "b.jsonl").write_text(json.dumps({"text": "A bird sang."}) + "\n")
    cache = str(tmp_path / "cache")
    assert main(["data", "stats", str(tmp_path / "docs"), "--json", "--cache-dir", cache]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["records"], info["sentences"], info["duplicate_sentence_rate"]) == (3, 4, 0.25)
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "What is 2 + 2?", "solution": "4"}) + "\n")
    assert main(["data", "stats", str(qa), "--kind", "prompt", "--json", "--cache-dir", cache]) == 2
    assert capsys.readouterr().err.strip().endswith("map a column to it: --field prompt=question")
    assert main(["data", "stats", str(qa), "--kind", "prompt", "--field", "prompt=question", "--json",
                 "--cache-dir", cache]) == 0
    assert json.loads(capsys.readouterr().out)["words"] == 4
    assert main(["data", "stats", str(qa), "--field", "question", "--json", "--cache-dir", cache]) == 0  # text column
    assert json.loads(capsys.readouterr().out)["characters"] == len("What is 2 + 2?")
    assert main(["data", "stats", "builtin:preferences?n=20", "--kind", "preference", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 20
    assert main(["data", "stats", str(tmp_path / "docs"), "--split", "valid"]) == 2
    assert "holds one split, 'train', not 'valid'" in capsys.readouterr().err
    assert main(["data", "stats", str(qa), "--kind", "sft"]) == 2
    assert "--kind sft: use one of text, chat, preference, prompt" in capsys.readouterr().err
