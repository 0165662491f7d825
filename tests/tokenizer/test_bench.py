"""The tokenizer benchmark runs end to end on a small generated corpus and reports both trainers."""

from __future__ import annotations

from llmfs.bench.tokenizer import run


def test_bench_runs_on_small_text(tmp_path, capsys):
    f = tmp_path / "small.txt"
    f.write_text("".join(f"The {i % 7} little cats went to town, said {i}.\n<|endoftext|>\n" for i in range(400)))
    (row,) = run([f], vocab_sizes=[300], workers=1, repeats=1)
    assert row["llmfs"]["vocab_size"] == row["tokenizers"]["vocab_size"] == 300
    assert abs(row["bytes_per_token_diff"]) < 0.02  # same data, same setup: near-identical compression
    assert row["time_ratio"] > 0 and row["llmfs"]["peak_rss_mib"] >= 0
    out = capsys.readouterr().out
    assert "train s" in out and "bytes/token" in out and "encode MB/s" in out
