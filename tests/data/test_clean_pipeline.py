"""`llmfs data clean` end to end (llmfs/data/clean/pipeline.py): nothing lost, resume is byte-identical, any
number of workers gives the same output, the CLI and its one-line errors, and `data stats`' script mix."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from pathlib import Path

import pytest

from llmfs.cli import main
from llmfs.data.clean.config import CleanConfig, load_clean_recipe
from llmfs.data.clean.pipeline import Interrupted, run
from llmfs.data.stats import corpus_stats, script_counts
from llmfs.errors import ConfigError, DataError

VOCAB = ("the of and to with that have be a in on at for from by house river garden child teacher morning "
         "evening quickly slowly bright quiet green yellow window table forest mountain walked looked found "
         "carried opened small large happy tired friend letter story city village road bridge bird dog cat "
         "apple bread water music lamp door summer winter").split()


def make_corpus(path: Path, n: int = 40, seed: int = 0) -> list[str]:
    """n random prose documents plus planted cases: an exact and a near duplicate, a short one, a bullet list,
    repeated lines, PII; separated by <|endoftext|> lines. Returns the planted PII values."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        sentences = [" ".join(rng.choice(VOCAB) for _ in range(rng.randrange(8, 14))).capitalize() + "."
                     for _ in range(rng.randrange(6, 10))]
        docs.append(" ".join(sentences))
    pii = ["jane.doe@example.com", "(555) 123-4567", "4111 1111 1111 1111", "10.0.0.42"]
    docs[3] += f" Write to {pii[0]} or call {pii[1]}; card {pii[2]} from host {pii[3]}."
    words = docs[5].split()
    docs += [docs[1],                                                  # exact duplicate
             " ".join(words[:20] + ["zebra"] + words[21:]),            # near duplicate: one word changed
             "Too short to keep.",
             "\n".join(f"- item {w} and the {w}" for w in VOCAB[:20]),  # bullet lines
             "\n".join(["The child walked to the river with a friend and looked at the water."] * 6),
             "   \n  ",                                                 # empty after normalisation
             "<script>alert(1)</script>"]
    path.write_text("".join(d + "\n<|endoftext|>\n" for d in docs), encoding="utf-8")
    return pii


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def corpus(tmp_path) -> tuple[Path, list[str]]:
    path = tmp_path / "raw.txt"
    return path, make_corpus(path)


def test_every_document_is_kept_or_dropped_for_one_reason(corpus, tmp_path):
    path, pii = corpus
    report = run([str(path)], tmp_path / "out", CleanConfig(), quiet=True)
    kept = read_jsonl(tmp_path / "out" / "clean.jsonl")
    dropped = read_jsonl(tmp_path / "out" / "dropped.jsonl")
    assert report["documents_in"] == 47 == len(kept) + len(dropped)
    assert report["kept"] == len(kept) and Counter(d["reason"] for d in dropped) == report["dropped"]
    assert report["dropped"]["exact_duplicate"] == 1 and report["dropped"]["near_duplicate"] == 1
    assert {"too_few_words", "bullet_lines", "duplicate_lines", "empty"} <= set(report["dropped"])
    near = next(d for d in dropped if d["reason"] == "near_duplicate")
    assert near["kept_line"] == 6 and near["jaccard"] >= 0.7  # docs[5] is the 6th line of clean.jsonl
    assert report["pii"] == {"credit_card": 1, "email": 1, "ipv4": 1, "phone": 1}
    text = (tmp_path / "out" / "clean.jsonl").read_text(encoding="utf-8")
    assert all(value not in text for value in pii) and "<|email|>" in text
    assert set(report["examples"]) == set(report["dropped"])
    assert report["examples"]["too_few_words"][0]["n_words"] == 4
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == report


def test_dropped_documents_and_report_examples_are_masked_too(tmp_path):
    """A document dropped by a filter still has its PII masked in dropped.jsonl and the report's examples: both
    are files people share to discuss thresholds."""
    path = tmp_path / "raw.txt"
    path.write_text("Mail jane.doe@example.com now.\n<|endoftext|>\n", encoding="utf-8")  # too few words
    report = run([str(path)], tmp_path / "out", CleanConfig(), quiet=True)
    assert report["dropped"] == {"too_few_words": 1}
    for name in ("dropped.jsonl", "report.json"):
        text = (tmp_path / "out" / name).read_text(encoding="utf-8")
        assert "jane.doe@example.com" not in text and "<|email|>" in text, name


def test_interrupted_run_resumes_byte_identical(corpus, tmp_path):
    path, _ = corpus
    cfg = dataclasses.replace(CleanConfig(), checkpoint_every=7)
    full = run([str(path)], tmp_path / "full", cfg, quiet=True)
    with pytest.raises(Interrupted):
        run([str(path)], tmp_path / "part", cfg, quiet=True, stop_after=20)
    state = json.loads((tmp_path / "part" / "state.json").read_text())
    assert state["consumed"] == 14 and not state["done"]  # the outputs hold 20 documents, 6 past the checkpoint
    with pytest.raises(Interrupted):  # a second interruption, from the checkpoint at 14
        run([str(path)], tmp_path / "part", cfg, quiet=True, stop_after=15)
    resumed = run([str(path)], tmp_path / "part", cfg, quiet=True, workers=2)
    assert resumed["resumed_from"] == 28
    for name in ("clean.jsonl", "dropped.jsonl", "dedup_index.jsonl"):
        assert (tmp_path / "part" / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
    skip = ("seconds", "documents_per_second", "mb_per_second", "resumed_from", "out")
    assert {k: v for k, v in resumed.items() if k not in skip} == {k: v for k, v in full.items() if k not in skip}
    with pytest.raises(DataError, match="already holds a finished clean run"):
        run([str(path)], tmp_path / "part", cfg, quiet=True)


def test_resume_refuses_other_settings(corpus, tmp_path):
    path, _ = corpus
    with pytest.raises(Interrupted):
        run([str(path)], tmp_path / "out", CleanConfig(), quiet=True, stop_after=3)
    with pytest.raises(DataError, match="other inputs, --field or \\[clean\\] settings"):
        run([str(path)], tmp_path / "out", dataclasses.replace(CleanConfig(), min_chars=5), quiet=True)


def test_workers_give_identical_output(corpus, tmp_path):
    path, _ = corpus
    one = run([str(path)], tmp_path / "one", CleanConfig(), quiet=True, workers=1)
    two = run([str(path)], tmp_path / "two", CleanConfig(), quiet=True, workers=2)
    for name in ("clean.jsonl", "dropped.jsonl"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert one["dropped"] == two["dropped"] and one["pii"] == two["pii"]


def test_html_jsonl_and_paragraph_inputs(tmp_path):
    page = tmp_path / "pages" / "a.html"
    page.parent.mkdir()
    page.write_text("<html><head><title>x</title></head><body><p>First para &amp; more.</p><p>Second one.</p>"
                    "<script>var secret = 1;</script></body></html>")
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"content": t}) + "\n" for t in ["row one", "row two", "row one"]))
    cfg = load_clean_recipe(None, ["clean.quality.enabled=false", "clean.repetition.enabled=false"])
    report = run([str(page.parent), str(rows)], tmp_path / "out", cfg, quiet=True, field="content",
                 cache_dir=tmp_path / "cache")
    texts = [r["text"] for r in read_jsonl(tmp_path / "out" / "clean.jsonl")]
    assert texts == ["First para & more.\n\nSecond one.", "row one", "row two"]  # <head> (and <title>) dropped
    assert report["dropped"] == {"exact_duplicate": 1}
    cfg = dataclasses.replace(cfg, split="paragraph")
    run([str(page.parent)], tmp_path / "paras", cfg, quiet=True)
    assert [r["text"] for r in read_jsonl(tmp_path / "paras" / "clean.jsonl")] == \
        ["First para & more.", "Second one."]


def test_cli_end_to_end_and_errors(corpus, tmp_path, capsys):
    path, _ = corpus
    out = tmp_path / "out"
    assert main(["data", "clean", "--input", str(path), "--out", str(out), "--workers", "2", "-q",
                 "--set", "clean.quality.min_words=10"]) == 0
    assert "kept" in capsys.readouterr().out and (out / "report.json").is_file()
    assert json.loads((out / "report.json").read_text())["dropped"]["too_few_words"] == 2
    assert main(["data", "clean", "--input", str(path), "--out", str(out)]) == 2
    assert "already holds a finished clean run" in capsys.readouterr().err
    missing = tmp_path / "nope.txt"
    assert main(["data", "clean", "--input", str(missing), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {missing}: input not found") and err.count("\n") == 1
    assert not (tmp_path / "o2").exists()  # inputs are checked before anything is written
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("[clean.quality]\nmin_wrds = 3\n")
    assert main(["data", "clean", "--input", str(path), "--out", str(tmp_path / "o3"), "--config", str(recipe)]) == 2
    assert capsys.readouterr().err == (f"error: {recipe}: unknown key 'clean.quality.min_wrds'; did you mean "
                                       "'clean.quality.min_words'? (valid: enabled, min_words, max_words, "
                                       "min_mean_word_length, max_mean_word_length, max_symbol_word_ratio, "
                                       "max_bullet_line_fraction, max_ellipsis_line_fraction, "
                                       "min_alpha_word_fraction, min_stop_words)\n")
    assert main(["data", "clean", "--input", str(path), "--out", str(tmp_path / "o4"),
                 "--set", "clean.dedup.threshold=1.5"]) == 2
    assert "clean.dedup.threshold: must be <= 1, got 1.5" in capsys.readouterr().err
    assert main(["data", "clean", "--input", str(path), "--out", str(tmp_path / "o5"), "--workers", "0"]) == 2
    assert "--workers 0: must be at least 1" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="bands: must divide num_perm"):
        load_clean_recipe(None, ["clean.dedup.bands=3"])


def test_stats_script_mix(tmp_path, capsys):
    assert script_counts("Héllo, мир 世界 42 ✓ αβ\n") == {
        "whitespace": 6, "digits": 2, "latin": 5, "cyrillic": 3, "greek": 2, "arabic": 0, "cjk": 2,
        "punctuation": 1, "other": 1}
    mix = corpus_stats(["ab 12", "cd"])["script_mix"]
    assert mix == {"latin": round(4 / 7, 4), "whitespace": round(1 / 7, 4), "digits": round(2 / 7, 4)}
    path = tmp_path / "t.txt"
    path.write_text("Привет мир. Hello world.\n")
    assert main(["data", "stats", str(path)]) == 0
    out = capsys.readouterr().out
    assert "script_mix" in out and "cyrillic 0.36" in out and "duplicate_record_rate" in out
