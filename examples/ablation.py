"""Architecture ablation at equal wall-clock: the upgrades from GPT-2 to a Llama-style stack, one at a time.

    python examples/ablation.py                          # 120 s of training per variant on builtin stories
    python examples/ablation.py --budget 300 --out runs/ablation --set 'data.sources={"my.txt" = 1.0}'

Variants, each one change on top of the previous (so the table reads as "before vs. after each upgrade"):

    classic      learned positions, LayerNorm, GELU MLP (GPT-2 / nanoGPT)
    +rmsnorm     LayerNorm -> RMSNorm
    +rope        learned positions -> RoPE
    +swiglu      GELU -> SwiGLU (d_ff = 8/3 d: the same MLP parameters)  = the modern stack of recipes/small.toml
    +moe         every MLP -> 4 experts, top-2, each half as wide: the same *active* parameters
    +hybrid      MoE in every second block only (dense, MoE, dense, MoE)

Equal wall-clock, fairly: a variant that runs faster should get more steps, but every run must still finish its
learning-rate schedule (a run cut off in the middle of its cosine is at a high learning rate and looks worse than
it is). So each variant first trains `--calibrate` steps to measure its own tokens/s on this machine, then
trains a fresh run of budget x (steps per second) steps. The table reports the measured training seconds too
(the time between the first and the last logged step), so you can see how equal the budgets came out.

Every variant trains on the same data with the same tokenizer (trained once, by the first run) and the same
seed; the numbers come from each run's metrics.jsonl. Writes OUT/ablation.md (the table), OUT/ablation.json and,
with matplotlib (`pip install 'llmfs[plot]'`), OUT/ablation.png: validation bits per byte against training
seconds, and tokens/s per variant.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

from llmfs.config import load_recipe
from llmfs.train.pretrain import PretrainRecipe, run

ROOT = Path(__file__).resolve().parents[1]

# name -> recipe overrides; each row adds one change to the row above it
VARIANTS: dict[str, list[str]] = {
    "classic": ['model.position="learned"', 'model.norm="layernorm"', 'model.mlp="gelu"'],
    "+rmsnorm": ['model.position="learned"', 'model.norm="rmsnorm"', 'model.mlp="gelu"'],
    "+rope": ['model.position="rope"', 'model.norm="rmsnorm"', 'model.mlp="gelu"'],
    "+swiglu": ['model.position="rope"', 'model.norm="rmsnorm"', 'model.mlp="swiglu"'],
    "+moe": ['model.position="rope"', 'model.norm="rmsnorm"', 'model.mlp="swiglu"', "model.n_experts=4",
             "model.top_k=2", "model.d_ff={half_ff}"],
    "+hybrid": ['model.position="rope"', 'model.norm="rmsnorm"', 'model.mlp="swiglu"', "model.n_experts=4",
                "model.top_k=2", "model.d_ff={half_ff}", "model.moe_every=2"],
}


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def summarise(run_dir: Path) -> dict:
    """tokens/s (median of the logged intervals after the first), training seconds, final validation bpb, and
    the evaluation curve as (seconds since the first training step, bpb)."""
    rows = read_metrics(run_dir)
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    t0 = train[0]["time"]
    return {"tok_per_s": statistics.median(r["tok_per_s"] for r in train[1:] or train),
            "steps": train[-1]["step"], "train_seconds": train[-1]["time"] - t0,
            "val_bpb": evals[-1]["val_bpb"], "curve": [(e["time"] - t0, e["val_bpb"]) for e in evals]}


def ablate(recipe_path: Path, out: Path, *, budget: float, calibrate: int, variants: list[str],
           sets: list[str], evals: int = 4) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    base = load_recipe(recipe_path, PretrainRecipe, sets)
    half_ff = base.model.ffn_dim // 2
    tokens_per_step = base.data.batch_size * base.data.seq_len
    common = [f'run.out_dir="{out}"', "train.sample_every=0", "train.save_every=0", 'log.console="none"', *sets]
    tokenizer: list[str] = []
    results = []
    for name in variants:
        overrides = [o.format(half_ff=half_ff) for o in VARIANTS[name]]
        slug = name.lstrip("+")
        # 1. calibrate: a short run of this variant measures its tokens/s here
        calib = load_recipe(recipe_path, PretrainRecipe, common + overrides + tokenizer + [
            f'run.name="{slug}-calibrate"', f"train.max_steps={calibrate}", "train.eval_every=0",
            f"log.every={max(1, calibrate // 5)}", "schedule.warmup_steps=0", "data.eval_windows=1"])
        calib_dir = run(calib, force=True, quiet=True).parent
        if not tokenizer and base.tokenizer.kind == "bpe" and not base.tokenizer.path:
            # every later run reuses the tokenizer this one trained: the same tokens for all
            shutil.copytree(calib_dir / "tokenizer", out / "tokenizer", dirs_exist_ok=True)
            tokenizer = [f'tokenizer.path="{out / "tokenizer"}"']
        tps = summarise(calib_dir)["tok_per_s"]
        steps = max(2 * evals, int(budget * tps / tokens_per_step))
        # 2. the measured run: as many steps as the budget allows at that speed, its whole schedule
        warmup = min(base.schedule.warmup_steps, steps // 10)
        recipe = load_recipe(recipe_path, PretrainRecipe, common + overrides + tokenizer + [
            f'run.name="{slug}"', f"train.max_steps={steps}", f"train.eval_every={max(1, steps // evals)}",
            f"log.every={max(1, steps // 50)}", f"schedule.warmup_steps={warmup}"])
        run_dir = run(recipe, force=True, quiet=True).parent
        shutil.rmtree(calib_dir)
        s = summarise(run_dir)
        from llmfs.model.transformer import Transformer

        model = Transformer(recipe.model)
        results.append({"variant": name, "params": model.num_params(), "steps": steps, **s})
        print(f"{name:10s} {s['tok_per_s']:9,.0f} tok/s  {steps:6d} steps  {s['train_seconds']:6.1f} s  "
              f"val bpb {s['val_bpb']:.4f}", flush=True)
    return results


def table(results: list[dict], budget: float) -> str:
    lines = [f"Training budget {budget:g} s per variant (plus a calibration run each).", "",
             "| variant | params | tokens/s | steps | training s | val bpb | bpb vs classic |",
             "|---|---|---|---|---|---|---|"]
    first = results[0]["val_bpb"]
    for r in results:
        lines.append(f"| {r['variant']} | {r['params']:,} | {r['tok_per_s']:,.0f} | {r['steps']} | "
                     f"{r['train_seconds']:.1f} | {r['val_bpb']:.4f} | {r['val_bpb'] - first:+.4f} |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        xs, ys = zip(*r["curve"])
        a.plot(xs, ys, marker="o", label=r["variant"])
    a.set(xlabel="training seconds", ylabel="validation bits per byte", title="quality at equal wall-clock")
    a.legend()
    b.bar([r["variant"] for r in results], [r["tok_per_s"] for r in results])
    b.set(ylabel="tokens/s", title="training throughput")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipe", default=str(ROOT / "recipes" / "small.toml"))
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--budget", type=float, default=120.0, help="training seconds per variant")
    p.add_argument("--calibrate", type=int, default=20, help="steps of the speed-measuring run")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset, in order")
    p.add_argument("--set", dest="sets", action="append", default=[], help="a recipe override, repeatable")
    args = p.parse_args(argv)
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    out = Path(args.out)
    results = ablate(Path(args.recipe), out, budget=args.budget, calibrate=args.calibrate, variants=variants,
                     sets=args.sets)
    (out / "ablation.json").write_text(json.dumps(results, indent=1))
    (out / "ablation.md").write_text(table(results, args.budget))
    print(table(results, args.budget))
    try:
        plot(results, out / "ablation.png")
    except ImportError:
        print("no plot: pip install 'llmfs[plot]'")


if __name__ == "__main__":
    main()
