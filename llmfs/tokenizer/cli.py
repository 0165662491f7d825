"""`llmfs tokenize ...`: the tokenizer commands (a Typer sub-app the main CLI mounts).

Only typer and the standard library are imported here; each command imports its stage inside its body, so
`llmfs --help` stays fast. User mistakes are raised as LlmfsError; the main CLI prints them as `error: ...`.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(name="tokenize", help="Train, apply and inspect tokenizers.", no_args_is_help=True,
                  add_completion=False)

INPUT_HELP = "Text file, folder, .jsonl/.parquet file (text in --field) or hub dataset name; repeat for more."
FIELD_HELP = "The text column of .jsonl/.parquet inputs and hub datasets."
CACHE_HELP = "Cache folder for `datasets` (tables, hub downloads) [default: ./.llmfs_cache/datasets]."


@app.command("train-bpe")
def train_bpe(
    input: List[str] = typer.Option(..., "--input", "-i", help=INPUT_HELP),
    vocab_size: int = typer.Option(..., "--vocab-size", help="Total ids: 256 bytes + merges + special tokens."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for tokenizer.json, vocab.json, merges.txt."),
    special_tokens: Optional[List[str]] = typer.Option(None, "--special-tokens",
                                                       help="Special token; repeat for more [default: <|endoftext|>]."),
    pattern: str = typer.Option("gpt4", "--pattern", help="Split pattern: gpt2 or gpt4."),
    workers: int = typer.Option(1, "--workers", help="Processes for pre-tokenization."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    field: str = typer.Option("text", "--field", help=FIELD_HELP),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help=CACHE_HELP),
) -> None:
    """Train a byte-level BPE tokenizer."""
    from llmfs.tokenizer.train import train_bpe_files

    specials = tuple(special_tokens) if special_tokens else ("<|endoftext|>",)
    r = train_bpe_files(input, vocab_size, out, special_tokens=specials, pattern=pattern, workers=workers,
                        quiet=quiet, field=field, cache_dir=cache_dir)
    typer.echo(f"trained {r['merges']} merges, vocab {r['vocab_size']} in {r['seconds']:.2f}s -> {r['out']} "
               f"(sha256 {r['sha256'][:12]})")
    if r["vocab_size"] < r["requested_vocab_size"]:
        typer.echo(f"note: the input ran out of pairs; vocab is {r['vocab_size']}, not {r['requested_vocab_size']}")


@app.command("encode")
def encode(
    tokenizer: Path = typer.Option(..., "--tokenizer", "-t", help="Directory holding tokenizer.json."),
    input: List[str] = typer.Option(..., "--input", "-i", help=INPUT_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="New directory for the .bin shards and index.json."),
    workers: int = typer.Option(1, "--workers", help="Encoding processes."),
    shard_tokens: int = typer.Option(100_000_000, "--shard-tokens", help="Tokens per shard file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    field: str = typer.Option("text", "--field", help=FIELD_HELP),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help=CACHE_HELP),
) -> None:
    """Encode text into uint16/uint32 token shards, documents separated by the end-of-text token."""
    from llmfs.tokenizer.train import encode_files

    index = encode_files(tokenizer, input, out, workers=workers, shard_tokens=shard_tokens, quiet=quiet,
                         field=field, cache_dir=cache_dir)
    typer.echo(f"{index['total_tokens']:,} tokens, {index['documents']:,} documents, {len(index['shards'])} "
               f"shard(s) of {index['dtype']} -> {out}")


@app.command("stats")
def stats(
    tokenizer: Path = typer.Option(..., "--tokenizer", "-t", help="Directory holding tokenizer.json."),
    input: List[str] = typer.Option(..., "--input", "-i", help=INPUT_HELP),
    top: int = typer.Option(10, "--top", help="How many of the longest tokens to show."),
    max_chars: Optional[int] = typer.Option(None, "--max-chars", help="Measure only this many characters."),
    field: str = typer.Option("text", "--field", help=FIELD_HELP),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help=CACHE_HELP),
) -> None:
    """Bytes per token, vocabulary use and the longest tokens on some text."""
    from llmfs.tokenizer.train import stats as run_stats

    s = run_stats(tokenizer, input, top=top, max_chars=max_chars, field=field, cache_dir=cache_dir)
    typer.echo(f"bytes/token   {s['bytes_per_token']:.3f}  ({s['bytes']:,} bytes, {s['tokens']:,} tokens)")
    typer.echo(f"vocab use     {s['vocab_use']:.1%}  ({s['ids_seen']:,} of {s['vocab_size']:,} ids seen)")
    typer.echo("longest tokens:")
    for i, text, n in s["longest_tokens"]:
        typer.echo(f"  {i:>7}  {n:>3} bytes  {text!r}")
