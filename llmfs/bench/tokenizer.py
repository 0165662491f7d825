"""Tokenizer benchmark: llmfs's from-scratch BPE trainer vs `tokenizers`' BpeTrainer on the same text.

    python -m llmfs.bench.tokenizer --input data.txt --vocab-sizes 4096 8192 --workers 1

Same setup on both sides: byte-level alphabet, the same split pattern (Split + ByteLevel(use_regex=False) on the
`tokenizers` side), the same special token, the same total vocab size, the same text. Both get the documents from
`llmfs.data.sources` (separator lines removed), cut into pieces at pre-token-safe boundaries, so both count the
same pre-tokens; `tokenizers` receives them through `train_from_iterator` and uses all its threads.

Measured per (corpus, vocab size, trainer), each in a fresh forked child process so runs do not share heaps:
- wall time of training (reading the file included), and CPU time (user + system, all threads and worker
  processes), which other jobs on a shared machine disturb less than wall time. `tokenizers` is also timed in
  its fastest mode, `train([path])` (Rust reads the file line by line; separator lines are trained on as text,
  so that tokenizer is not compared further); the time ratio is taken against the faster of its two times;
- peak memory: peak RSS minus RSS just before training, in the training process (Linux VmHWM after resetting it
  through /proc/self/clear_refs). Pre-tokenization worker processes (llmfs with workers > 1) are not included;
- bytes per token: UTF-8 bytes of the corpus / tokens, encoding every document;
- encode MB/s on the corpus: llmfs's Python encoder (cold cache), llmfs's bulk path (`encode_batch`, the
  `tokenizers` backend) and the `tokenizers` tokenizer trained by BpeTrainer (`encode_batch`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import time
from collections.abc import Sequence
from pathlib import Path

SPECIALS = ("<|endoftext|>",)
PIECE_CHARS = 1 << 14  # pieces handed to both trainers


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads) and of its reaped children (pool workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _pieces(path: str) -> list[str]:
    from llmfs.data.sources import cut, iter_documents

    return [p.text for doc in iter_documents([path]) for p in cut(doc, PIECE_CHARS)]


def _train_llmfs(path: str, vocab_size: int, workers: int, pattern: str):
    from llmfs.data.sources import iter_pieces
    from llmfs.tokenizer.bpe import train_bpe

    return train_bpe((p.text for p in iter_pieces([path])), vocab_size, special_tokens=SPECIALS, pattern=pattern,
                     workers=workers, quiet=True)


def _train_hf(path: str, vocab_size: int, pattern: str, from_file: bool = False):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    from llmfs.tokenizer.patterns import PATTERNS

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PATTERNS[pattern]), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    if from_file:  # its fastest mode: Rust reads the file line by line (separator lines become text)
        tok.train([path], trainer)
    else:
        tok.train_from_iterator(_pieces(path), trainer)
    return tok


def _measure(which: str, path: str, vocab_size: int, workers: int, pattern: str, queue) -> None:
    """Runs in a forked child: train, then measure encoding; puts a result dict on `queue`."""
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    base = _rss_kib("VmRSS")
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    if which == "llmfs":
        tok = _train_llmfs(path, vocab_size, workers, pattern)
    else:
        tok = _train_hf(path, vocab_size, pattern, from_file=which == "tokenizers-file")
    seconds = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    if which == "tokenizers-file":  # reference time only
        queue.put({"trainer": which, "seconds": seconds, "cpu_seconds": cpu})
        return
    peak_kib = _rss_kib("VmHWM") - base
    from llmfs.data.sources import iter_documents

    docs = list(iter_documents([path]))
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    mb = n_bytes / 1e6
    result = {"trainer": which, "seconds": seconds, "cpu_seconds": cpu, "peak_rss_mib": peak_kib / 1024,
              "bytes": n_bytes}
    if which == "llmfs":
        from llmfs.tokenizer.encoder import BPETokenizer

        fresh = BPETokenizer(tok.vocab, tok.merges, SPECIALS, tok.pattern)  # cold pre-token cache
        t0 = time.perf_counter()
        ids = [fresh.encode(d) for d in docs]
        result["encode_mb_s"] = mb / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        fast = tok.encode_batch(docs)
        result["encode_fast_mb_s"] = mb / (time.perf_counter() - t0)
        if fast != ids:
            raise AssertionError("llmfs fast path differs from the Python encoder")  # a bug, never expected
        result["vocab_size"] = tok.vocab_size
    else:
        tok.encode_special_tokens = True
        t0 = time.perf_counter()
        ids = [e.ids for e in tok.encode_batch(docs, add_special_tokens=False)]
        result["encode_mb_s"] = mb / (time.perf_counter() - t0)
        result["vocab_size"] = tok.get_vocab_size()
    result["tokens"] = sum(len(x) for x in ids)
    result["bytes_per_token"] = n_bytes / result["tokens"]
    queue.put(result)


def _in_child(*args) -> dict:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def run(paths: Sequence[str | Path], vocab_sizes: Sequence[int] = (4096, 8192), workers: int = 1,
        pattern: str = "gpt4", repeats: int = 3) -> list[dict]:
    """Benchmark both trainers on each corpus and vocab size; prints a table and returns one row per pair.
    Times are the best of `repeats` runs (the machine is shared); memory and bytes/token come from that run."""
    rows = []
    for path in paths:
        size_mb = Path(path).stat().st_size / 1e6
        for vocab_size in vocab_sizes:
            best = {}
            for which in ("llmfs", "tokenizers", "tokenizers-file"):
                runs = [_in_child(which, str(path), vocab_size, workers, pattern) for _ in range(repeats)]
                best[which] = min(runs, key=lambda r: r["seconds"])
            ours, ref = best["llmfs"], best["tokenizers"]
            fastest_ref = min(ref["seconds"], best["tokenizers-file"]["seconds"])
            row = {"corpus": Path(path).name, "input_mb": size_mb, "vocab_size": vocab_size, "workers": workers,
                   "pattern": pattern, "llmfs": ours, "tokenizers": ref,
                   "tokenizers_file_seconds": best["tokenizers-file"]["seconds"],
                   "time_ratio": ours["seconds"] / fastest_ref,
                   "bytes_per_token_diff": ours["bytes_per_token"] / ref["bytes_per_token"] - 1,
                   "memory_over_input": ours["peak_rss_mib"] * 1.048576 / size_mb}
            rows.append(row)
            _print_row(row)
    return rows


def _print_row(r: dict) -> None:
    o, t = r["llmfs"], r["tokenizers"]
    print(f"{r['corpus']} ({r['input_mb']:.2f} MB) vocab {r['vocab_size']} pattern {r['pattern']} "
          f"workers {r['workers']}")
    print(f"  train s       llmfs {o['seconds']:7.3f}   tokenizers {t['seconds']:7.3f} (same pieces) "
          f"{r['tokenizers_file_seconds']:7.3f} (from file)   ratio to the faster {r['time_ratio']:.2f}x")
    print(f"  train CPU s   llmfs {o['cpu_seconds']:7.3f}   tokenizers {t['cpu_seconds']:7.3f} (same pieces)   "
          f"ratio {o['cpu_seconds'] / t['cpu_seconds']:.2f}x")
    print(f"  peak RSS MiB  llmfs {o['peak_rss_mib']:7.1f}   tokenizers {t['peak_rss_mib']:7.1f}   "
          f"llmfs / input {r['memory_over_input']:.2f}x")
    print(f"  bytes/token   llmfs {o['bytes_per_token']:7.4f}   tokenizers {t['bytes_per_token']:7.4f}   "
          f"diff {r['bytes_per_token_diff']:+.3%}")
    print(f"  encode MB/s   llmfs {o['encode_mb_s']:7.2f} (python)  {o['encode_fast_mb_s']:7.2f} (bulk)   "
          f"tokenizers {t['encode_mb_s']:7.2f}")


# ------------------------------------------------------------------------------- `llmfs bench tokenizer`
KEYS = ("corpus", "vocab_size", "trainer")
REPORT_FIGURES = ("seconds", "cpu_seconds", "peak_rss_mib", "bytes_per_token", "encode_mb_s", "encode_fast_mb_s")


def builtin_corpus(path: Path, max_bytes: int, source: str = "builtin:stories") -> Path:
    """The first `max_bytes` of an offline built-in corpus written as a text file, one `<|endoftext|>` line
    between documents: the default input, so the suite runs with no data and no network."""
    from llmfs.data.sources import iter_documents

    parts, size = [], 0
    for doc in iter_documents([source]):
        parts.append(doc)
        size += len(doc.encode("utf-8")) + len(SPECIALS[0]) + 2
        if size >= max_bytes:
            break
    path.write_text(f"\n{SPECIALS[0]}\n".join(parts) + "\n", encoding="utf-8")
    return path


def flatten(rows: list[dict]) -> list[dict]:
    """run()'s rows, one per (corpus, vocab size) with both trainers nested, as one report row per trainer."""
    out = []
    for r in rows:
        for trainer in ("llmfs", "tokenizers"):
            m = r[trainer]
            row = {"corpus": r["corpus"], "vocab_size": r["vocab_size"], "trainer": trainer, "input_mb": r["input_mb"],
                   **{k: m[k] for k in REPORT_FIGURES if k in m}}
            if trainer == "llmfs":
                row["time_vs_tokenizers"] = r["time_ratio"]
            else:
                row["from_file_seconds"] = r["tokenizers_file_seconds"]
            out.append(row)
    return out


def report(paths: Sequence[str | Path], *, quick: bool = False, vocab_sizes: Sequence[int] | None = None,
           workers: int = 1) -> dict:
    """The tokenizer report (report.py's shape). Without `paths`, a built-in corpus is generated: 1 MB
    (quick: 100 kB, vocab 512, one repeat)."""
    import tempfile

    import torch

    from llmfs.bench import report as rep
    from llmfs.bench.timing import environment

    vocab_sizes = vocab_sizes or ((512,) if quick else (4096,))
    env = environment(torch.device("cpu"), "n/a")
    with tempfile.TemporaryDirectory() as tmp:
        if not paths:
            paths = [builtin_corpus(Path(tmp) / "builtin-stories.txt", 100_000 if quick else 1_000_000)]
        for p in paths:
            if not Path(p).is_file():
                from llmfs.errors import LlmfsError

                raise LlmfsError(f"--input {p}: not a file; pass a UTF-8 text file")
        rows = run(paths, vocab_sizes, workers, repeats=1 if quick else 3)
    notes = [f"best of {1 if quick else 3} runs per trainer, each in a fresh forked process; peak_rss_mib = peak "
             "RSS growth while training; time_vs_tokenizers = llmfs time / the faster of tokenizers' two modes"]
    return rep.make("tokenizer", env, KEYS, flatten(rows), notes)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m llmfs.bench.tokenizer", description=__doc__.splitlines()[0])
    p.add_argument("--input", nargs="+", required=True, help="text files to train on")
    p.add_argument("--vocab-sizes", nargs="+", type=int, default=[4096, 8192])
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--pattern", default="gpt4", choices=["gpt2", "gpt4"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f} (the machine is shared)")
    rows = run(args.input, args.vocab_sizes, args.workers, args.pattern, args.repeats)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
