"""The command line: version, help surface, one-line errors with exit code 2, --debug tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from llmfs import __version__
from llmfs import checkpoint as ck
from llmfs.cli import main

# The commands `llmfs --help` lists. A new command changes this on purpose (DESIGN.md house rule 9).
COMMANDS = ["bench", "chat", "data", "export", "generate", "grpo", "import", "inspect", "plot", "ppo", "pretrain",
            "reward", "sft", "tokenize"]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmfs", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_version_and_help_surface(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"llmfs {__version__}"
    from typer.main import get_command

    from llmfs.cli import app

    assert sorted(get_command(app).commands) == sorted(COMMANDS)
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage: llmfs" in out and all(c in out for c in COMMANDS)


def test_import_and_help_do_not_import_torch():
    code = ("import sys, llmfs, llmfs.cli, llmfs.config, llmfs.runtime, llmfs.metrics;"
            "from llmfs.cli import main;"
            "rc = main(['--help']);"
            "assert 'torch' not in sys.modules, 'torch imported';"
            "assert 'numpy' not in sys.modules, 'numpy imported';"
            "sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_usage_error_exits_2():
    out = run("no-such-command")
    assert out.returncode == 2 and "No such command 'no-such-command'" in out.stderr


def test_user_error_is_one_line_exit_2_and_debug_shows_traceback(tmp_path):
    missing = tmp_path / "nope"
    out = run("inspect", str(missing))
    assert out.returncode == 2
    assert out.stderr == f"error: {missing}: checkpoint directory not found\n"
    assert out.stdout == ""
    out = run("--debug", "inspect", str(missing))
    assert out.returncode == 2 and "Traceback (most recent call last)" in out.stderr
    assert out.stderr.rstrip().endswith(f"error: {missing}: checkpoint directory not found")
    out = run("inspect", str(missing), env={"LLMFS_DEBUG": "1"})
    assert out.returncode == 2 and "Traceback" in out.stderr


def test_inspect_prints_verified_summary(tmp_path, tokenizer_json, capsys):
    emb = torch.nn.Embedding(300, 4)
    path = ck.save(tmp_path / "final", kind="causal_lm", model_config={"vocab_size": 300},
                   state_dict={"embed_tokens.weight": emb.weight, "lm_head.weight": emb.weight},
                   tokenizer_json=tokenizer_json)
    assert main(["inspect", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["path"] == str(path) and info["parameters"] == 1200 and info["tensors"] == 1
    assert info["tied"] == {"lm_head.weight": "embed_tokens.weight"} and info["resume"] is None
    assert main(["inspect", str(path)]) == 0
    assert "checkpoint OK" in capsys.readouterr().out
    (path / ck.MODEL_FILE).write_bytes(b"garbage")
    assert main(["inspect", str(path)]) == 2
    assert "model.safetensors: contents do not match the sha256" in capsys.readouterr().err
