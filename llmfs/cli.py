"""The `llmfs` command.

Each command only parses its arguments, lazy-imports its stage and calls it, so `llmfs --help` answers without
importing torch. User mistakes (`LlmfsError`) are printed as one line `error: ...` on stderr with exit code 2;
`--debug` (or `LLMFS_DEBUG=1`) adds the traceback. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import List

import typer

from llmfs import __version__
from llmfs.errors import LlmfsError

app = typer.Typer(
    name="llmfs",
    help="Build a language model from scratch: tokenize, pretrain, sft, reward, ppo/grpo, generate, chat.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llmfs {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of user errors too."),
) -> None:
    """Build a language model from scratch: tokenize, pretrain, sft, reward, ppo/grpo, generate, chat."""


def trainer_command(module: str, recipe_class: str, example: str, doc: str):
    """A training command (`llmfs pretrain`, `llmfs sft`, ...): every trainer takes the same options and calls
    `module.run(recipe, ...)`, so they are built here once. Imports happen when the command runs."""

    def command(
        recipe: str = typer.Argument(..., help=f"A recipe, e.g. {example}."),
        overrides: list[str] = typer.Option([], "--set", help="Override a recipe value: --set optim.lr=1e-3 "
                                                              "(repeatable)."),
        resume: bool = typer.Option(False, "--resume", help="Require a checkpoint in the run directory to resume "
                                                            "from."),
        force: bool = typer.Option(False, "--force", help="Continue a run even though its recipe changed."),
        device: str = typer.Option(None, "--device", help="Override run.device: auto, cpu, mps, cuda, cuda:N."),
        precision: str = typer.Option(None, "--precision", help="Override run.precision: auto, fp32, bf16, fp16."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output (metrics.jsonl is still "
                                                                "written)."),
    ) -> None:
        import importlib

        from llmfs.config import load_recipe

        if precision is not None and precision not in ("auto", "fp32", "bf16", "fp16"):
            raise LlmfsError(f"--precision {precision}: use auto, fp32, bf16 or fp16")
        stage = importlib.import_module(module)
        path = stage.run(load_recipe(recipe, getattr(stage, recipe_class), overrides), resume=resume, force=force,
                         device=device, precision=precision, quiet=quiet)
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one line, not one per process
            typer.echo(f"checkpoint: {path}")

    command.__doc__ = doc
    return command


app.command("pretrain")(trainer_command(
    "llmfs.train.pretrain", "PretrainRecipe", "recipes/small.toml",
    "Pretrain a model on raw text (resumes automatically when the run directory has a checkpoint)."))
app.command("sft")(trainer_command(
    "llmfs.train.sft", "SFTRecipe", "recipes/sft.toml",
    "Fine-tune a pretrained checkpoint on conversations (loss on assistant replies only)."))
app.command("ppo")(trainer_command(
    "llmfs.train.ppo", "PPORecipe", "recipes/ppo.toml",
    "RLHF with PPO: a chat model against a reward model and / or rule rewards, KL to its starting point."))
app.command("grpo")(trainer_command(
    "llmfs.train.grpo", "GRPORecipe", "recipes/grpo.toml",
    "Group-relative policy optimisation of a chat model on prompts with verifiable rewards."))


@app.command()
def plot(
    run_dir: str = typer.Argument(..., help="A run directory (holding metrics.jsonl)."),
    out: str = typer.Option(None, "--out", help="Where to write the PNGs [default: RUN_DIR/plots]."),
) -> None:
    """Draw loss, bits per byte, learning rate and throughput curves as PNG files (needs llmfs\\[plot])."""
    from llmfs.plot import plot_run

    for path in plot_run(run_dir, out):
        typer.echo(str(path))


@app.command()
def inspect(
    checkpoint: str = typer.Argument(..., help="A checkpoint directory, or a run directory (its final/ or latest)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Verify a checkpoint (files, hashes, format, tokenizer) and print what it holds."""
    import json

    from llmfs import checkpoint as ck

    info = ck.summary(ck.open_checkpoint(checkpoint))
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for key in ("path", "kind", "format_version", "llmfs_version", "parameters", "tensors"):
        table.add_row(key, f"{info[key]:,}" if isinstance(info[key], int) and key != "format_version"
                      else str(info[key]))
    table.add_row("tied", ", ".join(f"{a} = {b}" for a, b in info["tied"].items()) or "none")
    table.add_row("model", ", ".join(f"{k}={v}" for k, v in info["model"].items()))
    parent = info["lineage"]["parent"]
    table.add_row("parent", "none" if parent is None else f"{parent['path']} (model {parent['model_sha256'][:12]})")
    table.add_row("resume", "no" if info["resume"] is None else json.dumps(info["resume"]))
    for name, digest in info["files"].items():
        table.add_row(name, f"sha256 {digest[:16]}")
    Console().print(table)
    typer.echo("checkpoint OK: file set, sha256 of every file, format_version and tokenizer vocab verified")


from llmfs.tokenizer.cli import app as tokenize_app  # noqa: E402 - imports only typer

app.add_typer(tokenize_app, name="tokenize")

export_app = typer.Typer(help="Export a checkpoint to another format.", no_args_is_help=True)
import_app = typer.Typer(help="Import a checkpoint from another format.", no_args_is_help=True)
app.add_typer(export_app, name="export")
app.add_typer(import_app, name="import")


@export_app.command("hf")
def export_hf(
    checkpoint: str = typer.Argument(..., help="An llmfs causal_lm checkpoint (or its run directory)."),
    out: str = typer.Argument(..., help="New directory for the transformers model."),
    arch: str = typer.Option(None, "--arch", help="llama or gpt2 [default: gpt2 for learned positions, else llama]."),
) -> None:
    """Write a directory that transformers' AutoModelForCausalLM / AutoTokenizer load."""
    from llmfs.model.hf_files import export_hf as export

    if arch not in (None, "llama", "gpt2"):
        raise LlmfsError(f"--arch {arch}: use llama or gpt2")
    typer.echo(f"exported: {export(checkpoint, out, arch)}")


@import_app.command("hf")
def import_hf(
    directory: str = typer.Argument(..., help="A transformers Llama / GPT-2 directory with safetensors weights."),
    out: str = typer.Argument(..., help="New llmfs checkpoint directory."),
) -> None:
    """Read a transformers Llama / GPT-2 directory into an llmfs checkpoint."""
    from llmfs.model.hf_files import import_hf as do_import

    typer.echo(f"imported: {do_import(directory, out)}")


data_app = typer.Typer(help="Inspect and clean data sources.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("stats")
def data_stats(
    source: str = typer.Argument(..., help="A data source: builtin:stories?size=2000000, a text file, a folder, a "
                                           ".jsonl/.parquet file or a hub dataset name."),
    split: str = typer.Option("train", help="train or valid for builtin sources; a hub dataset's own split names."),
    seed: int = typer.Option(0, help="Seed of a built-in source."),
    kind: str = typer.Option(None, "--kind", help="Read records with these fields: text, chat (messages), "
                                                  "preference (prompt, chosen, rejected), prompt [default: a "
                                                  "builtin's own records, else text]."),
    field: List[str] = typer.Option([], "--field", help="Map a field to the data's column: --field prompt=question "
                                                        "(repeatable); a bare --field content names the text column."),
    cache_dir: str = typer.Option(None, "--cache-dir", help="Cache folder for `datasets` "
                                                            "[default: ./.llmfs_cache/datasets]."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Size, vocabulary, sentence lengths, duplicate rates and script mix of a corpus."""
    import json

    from llmfs.data.stats import corpus_stats, stats_input

    fields = {}
    for item in field:
        name, sep, column = item.partition("=")
        if not sep:
            name, column = "text", item
        if not name or not column:
            raise LlmfsError(f"--field {item}: expected NAME=COLUMN (--field prompt=question) or a text column")
        fields[name] = column
    records = stats_input(source, kind=kind, fields=fields, split=split, seed=seed, cache_dir=cache_dir)
    info = {"source": source, "split": split, **corpus_stats(records)}
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    width = max(map(len, info))
    for key, value in info.items():
        if isinstance(value, dict):  # script_mix: "latin 0.77, whitespace 0.18, ..."
            value = ", ".join(f"{k} {v}" for k, v in sorted(value.items(), key=lambda kv: -kv[1])) or "-"
        typer.echo(f"{key:<{width}}  {value:,}" if isinstance(value, int) else f"{key:<{width}}  {value}")


@data_app.command("clean")
def data_clean(
    inputs: List[str] = typer.Option(..., "--input", "-i", help="Text file, folder, .jsonl/.parquet file (text in "
                                                                "--field) or hub dataset name; repeat for more."),
    out: str = typer.Option(..., "--out", "-o", help="Output directory: clean.jsonl, dropped.jsonl, report.json "
                                                     "(an unfinished run there is resumed)."),
    config: str = typer.Option(None, "--config", help="A recipe with a \\[clean] section \\[default: the "
                                                      "built-in defaults, as in recipes/clean.toml]."),
    overrides: List[str] = typer.Option([], "--set", help="Override a \\[clean] value: --set "
                                                          "clean.quality.min_words=20 (repeatable)."),
    workers: int = typer.Option(1, "--workers", help="Processes for the per-document steps."),
    field: str = typer.Option("text", "--field", help="The text column of .jsonl/.parquet inputs and hub datasets."),
    cache_dir: str = typer.Option(None, "--cache-dir", help="Cache folder for `datasets` "
                                                            "\\[default: ./.llmfs_cache/datasets]."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary table."),
) -> None:
    """Normalise, filter, deduplicate and PII-mask raw text into OUT/clean.jsonl, with a report."""
    from llmfs.data.clean.config import load_clean_recipe
    from llmfs.data.clean.pipeline import run
    from llmfs.data.clean.report import print_summary

    report = run(inputs, out, load_clean_recipe(config, overrides), workers=workers, quiet=quiet, field=field,
                 cache_dir=cache_dir)
    if not quiet:
        print_summary(report)
    from pathlib import Path

    typer.echo(f"kept {report['kept']:,} of {report['documents_in']:,} documents -> {Path(out) / 'clean.jsonl'} "
               f"(report: {Path(out) / 'report.json'})")


@app.command()
def generate(
    checkpoint: str = typer.Argument(..., help="A causal_lm checkpoint directory, or a run directory (its final/)."),
    prompt: list[str] = typer.Option([], "--prompt", "-p", help="A prompt (repeatable)."),
    file: str = typer.Option(None, "--file", help="A text file with one prompt per line."),
    as_json: bool = typer.Option(False, "--json", help="Print prompt, completion, token counts, finish reason, "
                                                       "seconds per prompt as JSON."),
    temperature: float = typer.Option(1.0, help="0 = greedy."),
    top_k: int = typer.Option(0, help="Keep the k most likely tokens; 0 = off."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling mass in (0, 1]; 1 = off."),
    min_p: float = typer.Option(0.0, help="Drop tokens below min_p * the top probability; 0 = off."),
    repetition_penalty: float = typer.Option(1.0, help="CTRL repetition penalty; 1 = off."),
    frequency_penalty: float = typer.Option(0.0, help="Subtract penalty * count; 0 = off."),
    max_new_tokens: int = typer.Option(128, help="New tokens per prompt at most."),
    seed: int = typer.Option(0, help="Sampling seed: the same seed gives the same text."),
    stop: list[str] = typer.Option([], "--stop", help="Stop before this string (repeatable)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Re-run the full forward per token (teaching path)."),
    rolling: bool = typer.Option(False, "--rolling", help="Rolling KV cache (window + sinks): generate past the "
                                                          "context length."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the decode step (CUDA graphs on CUDA); "
                                                         "the first call pays the compilation."),
    device: str = typer.Option(None, "--device", help="auto, cpu, mps, cuda, cuda:N [default: auto]."),
) -> None:
    """Complete prompts with a checkpoint: streamed text for one prompt, tokens/s on stderr."""
    from llmfs.infer.command import run as run_generate

    sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                    repetition_penalty=repetition_penalty, frequency_penalty=frequency_penalty,
                    max_new_tokens=max_new_tokens)
    run_generate(checkpoint, prompts=prompt, file=file, sampling=sampling, seed=seed, stop=stop,
                 use_cache=not no_cache, rolling=rolling, device=device, as_json=as_json, compile=compile)


@app.command()
def chat(
    checkpoint: str = typer.Argument(..., help="A chat checkpoint (the output of llmfs sft), or its run directory."),
    system: str = typer.Option(None, "--system", help="A system message for the conversation."),
    temperature: float = typer.Option(0.7, help="0 = greedy."),
    top_k: int = typer.Option(0, help="Keep the k most likely tokens; 0 = off."),
    top_p: float = typer.Option(0.9, help="Nucleus sampling mass in (0, 1]; 1 = off."),
    min_p: float = typer.Option(0.0, help="Drop tokens below min_p * the top probability; 0 = off."),
    repetition_penalty: float = typer.Option(1.0, help="CTRL repetition penalty; 1 = off."),
    frequency_penalty: float = typer.Option(0.0, help="Subtract penalty * count; 0 = off."),
    max_new_tokens: int = typer.Option(256, help="Longest reply in tokens."),
    seed: int = typer.Option(0, help="Sampling seed: the same seed and messages give the same replies."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the decode step (CUDA graphs on CUDA); "
                                                         "the first reply pays the compilation, and again "
                                                         "each time the conversation outgrows the cache "
                                                         "(64, 128, 256, ... slots)."),
    device: str = typer.Option(None, "--device", help="auto, cpu, mps, cuda, cuda:N [default: auto]."),
) -> None:
    """Talk to a chat model: streamed replies, /reset /system /set /save /quit; reads piped stdin line by line."""
    from llmfs.infer.chat import run as run_chat

    sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                    repetition_penalty=repetition_penalty, frequency_penalty=frequency_penalty,
                    max_new_tokens=max_new_tokens)
    run_chat(checkpoint, sampling=sampling, system=system, seed=seed, device=device, compile=compile)


bench_app = typer.Typer(help="Speed benchmarks: tokens/s, MFU and memory of each part of llmfs on this machine.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")

_QUICK = typer.Option(False, "--quick", help="A few seconds: the smallest sizes, fewer repeats.")
_JSON = typer.Option(None, "--json", help="Also write the report (env + rows) to this JSON file.")
_COMPARE = typer.Option(None, "--compare", help="Print this run's figures divided by those of an earlier --json "
                                                "report.")
_DEVICE = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N \\[default: auto].")


@bench_app.command("train")
def bench_train(
    sizes: list[str] = typer.Option([], "--size", help="tiny, small, medium, gpt2 (repeatable) \\[default: tiny, "
                                                       "small, medium on CPU; small, medium, gpt2 on CUDA]."),
    amp: bool = typer.Option(False, "--amp", help="A/B: fp32 vs bf16 autocast (+ fp16 with GradScaler on CUDA): "
                                                  "speed, memory and the loss after K identical steps."),
    compile: bool = typer.Option(False, "--compile", help="Add torch.compile variants."),
    profile: str = typer.Option(None, "--profile", help="Write a torch.profiler trace of a few steps to this "
                                                        "folder and print the top operators."),
    batch: int = typer.Option(None, "--batch", help="Sequences per step for every size \\[default: each size's "
                                                    "own, e.g. gpt2 8 x 1024 tokens]."),
    matmul_precision: str = typer.Option("highest", "--matmul-precision",
                                         help="fp32 matmuls as run.matmul_precision: highest (exact), high (TF32 "
                                              "on CUDA), medium (also bf16 inputs on CPUs with bf16 units)."),
    quick: bool = _QUICK, json: str = _JSON, compare: str = _COMPARE, device: str = _DEVICE,
) -> None:
    """Training step: tokens/s, MFU (measured and datasheet peak), memory, at a few model sizes."""
    from llmfs.bench import suites

    suites.train(sizes=sizes, quick=quick, amp=amp, compile=compile, profile=profile, device=device,
                 json_path=json, compare=compare, batch=batch, matmul_precision=matmul_precision)


@bench_app.command("generate")
def bench_generate(
    sizes: list[str] = typer.Option([], "--size", help="small, gpt2 or tiny (repeatable) \\[default: small; "
                                                       "gpt2 takes minutes on a CPU]."),
    new_tokens: int = typer.Option(None, "--new-tokens", help="Decode steps per measurement."),
    no_hf: bool = typer.Option(False, "--no-hf", help="Skip the transformers comparison."),
    compile: bool = typer.Option(False, "--compile", help="Add the compiled decode step (llmfs generate --compile)."),
    out: str = typer.Option(None, "--out", help="Also write the report (markdown) to this file."),
    quick: bool = _QUICK, json: str = _JSON, compare: str = _COMPARE, device: str = _DEVICE,
) -> None:
    """Prefill and decode tokens/s, batch 1 and 8, cached and uncached, against transformers' generate."""
    from llmfs.bench import suites

    suites.generate(sizes=sizes, quick=quick, new_tokens=new_tokens, hf=not no_hf, device=device, json_path=json,
                    compare=compare, out=out, compile=compile)


@bench_app.command("attention")
def bench_attention(quick: bool = _QUICK, json: str = _JSON, compare: str = _COMPARE,
                    device: str = _DEVICE) -> None:
    """manual vs sdpa attention, full and sliding window: forward and backward time and memory by length."""
    from llmfs.bench import suites

    suites.attention(quick=quick, device=device, json_path=json, compare=compare)


@bench_app.command("moe")
def bench_moe(quick: bool = _QUICK, json: str = _JSON, compare: str = _COMPARE, device: str = _DEVICE) -> None:
    """An MoE layer vs the dense MLP with the same active parameters: tokens/s and memory."""
    from llmfs.bench import suites

    suites.moe(quick=quick, device=device, json_path=json, compare=compare)


@bench_app.command("tokenizer")
def bench_tokenizer(
    inputs: list[str] = typer.Option([], "--input", help="Text files to train on (repeatable) \\[default: 1 MB of "
                                                         "builtin:stories]."),
    vocab_sizes: list[int] = typer.Option([], "--vocab-size", help="Vocabulary sizes (repeatable) "
                                                                   "\\[default: 4096]."),
    workers: int = typer.Option(1, "--workers", min=1, help="llmfs pre-tokenization processes."),
    quick: bool = _QUICK, json: str = _JSON, compare: str = _COMPARE,
) -> None:
    """llmfs's BPE trainer vs the tokenizers library: train time, memory, bytes/token, encode speed."""
    from llmfs.bench import suites

    suites.tokenizer(inputs=inputs, vocab_sizes=vocab_sizes, workers=workers, quick=quick, json_path=json,
                     compare=compare)


@bench_app.command("grpo")
def bench_grpo(
    checkpoint: str = typer.Option(None, "--checkpoint", help="A chat checkpoint \\[default: a random-initialised "
                                                               "small chat model]."),
    steps: int = typer.Option(None, "--steps", min=2, help="Iterations timed per framework (the first is warm-up)."),
    no_trl: bool = typer.Option(False, "--no-trl", help="Skip the TRL comparison."),
    quick: bool = _QUICK, json: str = _JSON, compare: str = _COMPARE,
) -> None:
    """GRPO samples/s: llmfs grpo vs TRL's GRPOTrainer on the same exported model, prompts and reward (CPU)."""
    from llmfs.bench import suites

    suites.grpo(checkpoint=checkpoint, steps=steps, trl=not no_trl, quick=quick, json_path=json, compare=compare)


@bench_app.command("all")
def bench_all(quick: bool = _QUICK, json: str = _JSON, compare: str = _COMPARE, device: str = _DEVICE) -> None:
    """Every suite in turn (train, generate, attention, tokenizer, moe) and one combined report."""
    from llmfs.bench import suites

    suites.run_all(quick=quick, device=device, json_path=json, compare=compare)


reward_app = typer.Typer(help="Reward models: train on preference pairs, score replies.", no_args_is_help=True)
app.add_typer(reward_app, name="reward")


reward_app.command("train")(trainer_command(
    "llmfs.train.reward", "RewardRecipe", "recipes/reward.toml",
    "Train a reward model on prompt / chosen / rejected pairs, from an SFT checkpoint."))


@reward_app.command("score")
def reward_score(
    checkpoint: str = typer.Argument(..., help="A reward checkpoint (the output of llmfs reward train) or its run."),
    prompt: str = typer.Option(None, "--prompt", "-p", help="The user turn the response answers."),
    response: str = typer.Option(None, "--response", "-r", help="The assistant reply to score."),
    file: str = typer.Option(None, "--file", help="JSON lines of {\"prompt\", \"response\"}: prints a JSON line "
                                                  "with the reward for each."),
    device: str = typer.Option(None, "--device", help="auto, cpu, mps, cuda, cuda:N [default: auto]."),
) -> None:
    """Print the reward of a reply (or of every line of --file)."""
    from llmfs.align.reward import run_score

    for line in run_score(checkpoint, prompt=prompt, response=response, file=file, device=device):
        typer.echo(line)


def _debug_requested(argv: list[str]) -> bool:
    """`--debug` given before the subcommand, or LLMFS_DEBUG=1 in the environment."""
    if os.environ.get("LLMFS_DEBUG", "") not in ("", "0"):
        return True
    for arg in argv:
        if arg == "--debug":
            return True
        if not arg.startswith("-"):
            return False
    return False


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `llmfs` command and `python -m llmfs`; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        app(args=args, prog_name="llmfs")  # standalone mode: usage errors print and exit 2 through SystemExit
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except LlmfsError as e:
        if _debug_requested(args):
            traceback.print_exc()
        message = " ".join(str(e).split("\n"))
        typer.echo(f"error: {message}", err=True)
        return e.exit_code
    return 0
