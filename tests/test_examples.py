"""examples/: local_text.sh runs end to end offline on a tiny model; every llmfs command line in the example
scripts names a real command with real options, and every pretraining one loads as a recipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TINY = ["--set", "model.d_model=48", "--set", "model.n_layers=1", "--set", "model.n_heads=2", "--set",
        "model.n_kv_heads=1", "--set", "data.batch_size=4", "--set", "data.eval_windows=4", "--set",
        "train.sample_tokens=8"]


def run_script(name: str, args: list[str], env: dict, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run(["bash", str(EXAMPLES / name), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_local_text_example_runs_offline(tmp_path):
    from llmfs.data.builtin import iter_builtin

    # Both splits: the script cleans the text first, which strips each story back to the exact text the built-in
    # split hashed, so train-split stories alone would leave pretraining's held-out split (same hash) empty.
    stories = [r["text"] for split in ("train", "valid")
               for r in iter_builtin("builtin:stories?size=60000", split=split)]
    (tmp_path / "text" / "more").mkdir(parents=True)  # a folder of .txt files, <|endoftext|> between documents
    half = len(stories) // 2
    (tmp_path / "text" / "a.txt").write_text("".join(s + "\n<|endoftext|>\n" for s in stories[:half]))
    (tmp_path / "text" / "more" / "b.txt").write_text("".join(s + "\n<|endoftext|>\n" for s in stories[half:]))
    out = tmp_path / "out"
    result = run_script("local_text.sh", [str(tmp_path / "text"), str(out), *TINY],
                        {"STEPS": "2", "VOCAB": "300", "LLMFS": f"{sys.executable} -m llmfs"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "duplicate_sentence_rate" in result.stdout and "bytes/token" in result.stdout
    assert "checkpoint OK" in result.stdout
    assert (out / "tokenizer" / "tokenizer.json").is_file() and (out / "pretrain" / "final").is_dir()
    metrics = [json.loads(line) for line in (out / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    assert any(m["kind"] == "eval" for m in metrics)


def command_lines(name: str, args: list[str], tmp_path: Path) -> list[list[str]]:
    """The llmfs argv of every command the script runs, recorded by a stub instead of run."""
    stub = tmp_path / "argv.py"
    stub.write_text("import json, sys\nprint('ARGV ' + json.dumps(sys.argv[1:]))\n")
    result = run_script(name, args, {"LLMFS": f"{sys.executable} {stub}", "STEPS": "30", "PYTHON": "true"})
    assert result.returncode == 0, result.stderr
    return [json.loads(line[5:]) for line in result.stdout.splitlines() if line.startswith("ARGV ")]


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.sh")))
def test_example_commands_exist_and_recipes_load(name, tmp_path):
    from typer.main import get_command

    from llmfs.cli import app
    from llmfs.config import load_recipe
    from llmfs.train.pretrain import PretrainRecipe

    (tmp_path / "t.txt").write_text("one\n<|endoftext|>\ntwo\n")
    args = {"local_text.sh": [str(tmp_path / "t.txt"), str(tmp_path / "out")],
            "rl_compare.sh": ["runs/sft", str(tmp_path / "out")],
            "shakespeare_char.sh": [str(tmp_path / "t.txt"), str(tmp_path / "out")]}.get(name, [str(tmp_path / "out")])
    lines = command_lines(name, args, tmp_path)
    assert lines, f"{name} runs no llmfs command"
    for argv in lines:
        cmd, rest = get_command(app), list(argv)
        while hasattr(cmd, "commands"):  # a group (typer vendors its own click: no isinstance check)
            sub = rest.pop(0)
            assert sub in cmd.commands, f"{name}: llmfs {' '.join(argv)}: no command {sub!r}"
            cmd = cmd.commands[sub]
        cmd.make_context(cmd.name, list(rest))  # unknown options or bad values raise click.UsageError here
        sets = [rest[i + 1] for i, a in enumerate(rest) if a == "--set"]
        if argv[0] == "pretrain":
            load_recipe(ROOT / rest[0], PretrainRecipe, sets)
        if argv[0] == "sft":
            from llmfs.train.sft import SFTRecipe

            load_recipe(ROOT / rest[0], SFTRecipe, sets)
        if argv[:2] == ["reward", "train"]:
            from llmfs.train.reward import RewardRecipe

            load_recipe(ROOT / rest[0], RewardRecipe, sets)
        if argv[0] in ("grpo", "ppo"):
            from llmfs.train.grpo import GRPORecipe
            from llmfs.train.ppo import PPORecipe

            load_recipe(ROOT / rest[0], {"grpo": GRPORecipe, "ppo": PPORecipe}[argv[0]], sets)


def test_rl_compare_runs_the_three_methods_and_plots_them(tmp_path):
    """examples/rl_compare.sh for 2 iterations each, from a tiny random chat model."""
    pytest.importorskip("matplotlib")
    from llmfs.tokenizer.byte import ByteTokenizer
    from llmfs.tokenizer.chat import with_chat_tokens

    from .infer.test_chat import make_ckpt

    sft, _ = make_ckpt(tmp_path / "sft", with_chat_tokens(ByteTokenizer()), max_seq_len=160)
    out = tmp_path / "rl"
    result = run_script("rl_compare.sh", [str(sft), str(out)], {"STEPS": "2", "LLMFS": f"{sys.executable} -m llmfs",
                                                                "PYTHON": sys.executable})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (out / "rl_compare.png").stat().st_size > 10_000
    for name in ("grpo", "reinforce", "ppo"):
        evals = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()
                 if json.loads(line)["kind"] == "eval"]
        assert [e["step"] for e in evals] == [0, 2] and all("accuracy" in e for e in evals)
    sys.path.insert(0, str(EXAMPLES))
    try:
        from rl_compare_plot import curves
    finally:
        sys.path.remove(str(EXAMPLES))
    assert [x for x, _ in curves(out / "grpo")["reward"]] == [64, 128]  # 8 prompts x 8 replies per step
    assert [x for x, _ in curves(out / "ppo")["reward"]] == [64, 128]  # 64 prompts x 1 reply


def test_ablation_trains_each_variant_for_its_budget_and_tabulates(tmp_path):
    """examples/ablation.py on a tiny byte-level model: calibrate, train, table, json and plot for two variants."""
    from .train.test_pretrain import TINY as TINY_RECIPE

    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE.format(out=tmp_path / "unused"))
    sys.path.insert(0, str(EXAMPLES))
    try:
        import ablation
    finally:
        sys.path.remove(str(EXAMPLES))
    out = tmp_path / "ablation"
    ablation.main(["--recipe", str(recipe), "--out", str(out), "--budget", "0.5", "--calibrate", "4",
                   "--variants", "classic,+moe", "--set", "model.d_model=32"])
    results = json.loads((out / "ablation.json").read_text())
    assert [r["variant"] for r in results] == ["classic", "+moe"]
    for r in results:
        assert r["steps"] >= 8 and r["tok_per_s"] > 0 and 0 < r["val_bpb"] < 9  # bytes: at most ~8 bits + noise
        assert len(r["curve"]) >= 2  # evaluations during and at the end of the run
        metrics = [json.loads(line) for line in (out / r["variant"].lstrip("+") / "metrics.jsonl").read_text()
                   .splitlines()]
        assert max(m["step"] for m in metrics if m["kind"] == "train") == r["steps"]
    assert results[1]["params"] > results[0]["params"]  # 4 half-width experts: more total parameters
    assert not list(out.glob("*-calibrate"))  # calibration runs are removed
    table = (out / "ablation.md").read_text()
    assert "| classic |" in table and "| +moe |" in table
    if (out / "ablation.png").exists():
        assert (out / "ablation.png").stat().st_size > 5_000
