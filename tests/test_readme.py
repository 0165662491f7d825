"""The README's quick start stays true: its test command is the one CI runs, and its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_quick_start_is_two_commands_and_ci_runs_the_test_one():
    blocks = bash_blocks((ROOT / "README.md").read_text())
    assert len(blocks) == 2, "the quick start is exactly two commands: run the main job, run the tests"
    main_job, tests = blocks
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci, ".ci/run must run the README's test command verbatim"
    assert main_job.startswith("pip install -e . && llmfs ")


def test_readme_main_command_is_a_real_command():
    from typer.main import get_command

    from llmfs.cli import app

    main_job = bash_blocks((ROOT / "README.md").read_text())[0]
    words = main_job.split("&& llmfs ", 1)[1].split()
    assert words[0] == "--help" or words[0] in get_command(app).commands
