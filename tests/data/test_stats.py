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
