"""Reward and held-out accuracy against replies sampled, for several RL runs (examples/rl_compare.sh).

    python examples/rl_compare_plot.py runs/rl/grpo runs/rl/reinforce runs/rl/ppo --out runs/rl/rl_compare.png

Replies per step come from each run's recipe.toml: prompts_per_step x group_size for GRPO, prompts_per_step for
PPO. Needs matplotlib (`pip install 'llmfs[plot]'`).
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path


def replies_per_step(run_dir: Path) -> int:
    recipe = tomllib.loads((run_dir / "recipe.toml").read_text(encoding="utf-8"))
    group = recipe.get("grpo", {}).get("group_size", 1)
    return recipe["data"]["prompts_per_step"] * group


def curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """{"reward": [(replies sampled, mean reward)], "accuracy": [(replies sampled, greedy accuracy)]}."""
    per_step = replies_per_step(run_dir)
    out: dict[str, list[tuple[int, float]]] = {"reward": [], "accuracy": []}
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r["kind"] == "train" and "reward" in r:
            out["reward"].append((r["step"] * per_step, r["reward"]))
        if r["kind"] == "eval" and "accuracy" in r:
            out["accuracy"].append((r["step"] * per_step, r["accuracy"]))
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_r, ax_a) = plt.subplots(1, 2, figsize=(11, 4))
    for run in args.runs:
        c = curves(run)
        for ax, key in ((ax_r, "reward"), (ax_a, "accuracy")):
            if c[key]:
                xs, ys = zip(*c[key])
                ax.plot(xs, ys, label=run.name, marker="o" if key == "accuracy" else None)
    ax_r.set(xlabel="replies sampled", ylabel="mean reward (training rollouts)")
    ax_a.set(xlabel="replies sampled", ylabel="held-out accuracy (greedy)")
    for ax in (ax_r, ax_a):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(args.out)
    return args.out


if __name__ == "__main__":
    main()
