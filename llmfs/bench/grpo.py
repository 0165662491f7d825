"""GRPO samples per second: `llmfs grpo` against TRL's `GRPOTrainer`, same model, prompts, reward and shapes.

    llmfs bench grpo                      # a random-initialised chat model (d 128, 4 layers), 6 iterations each
    llmfs bench grpo --checkpoint runs/sft --steps 10 --json grpo.json
    llmfs bench grpo --quick              # 2 prompts x 4 replies of <= 8 tokens, 3 iterations

One iteration = sample `group` replies for each of `prompts` prompts (temperature 1, at most `new_tokens`
tokens, stopping at the end-of-turn token), score them (exact match + 0.1 x format on builtin:arithmetic),
group-normalised advantages, one clipped policy-gradient update over all replies (llmfs: epochs 1,
minibatch = every reply, token aggregation; TRL: num_iterations 1, per_device_train_batch_size = every reply,
loss_type "dapo", which is the same token-level mean), no KL term (TRL's beta 0, llmfs's kl_coef 0), no evaluation,
no checkpoints in between. TRL runs on the model `llmfs export hf` writes from the same checkpoint, with the
prompts rendered by the exported chat template (the same token ids as llmfs's template).

Timing: the wall-clock between consecutive iterations (llmfs: the `time` of each metrics.jsonl line, logged every
step; TRL: a callback at each step end), the first iteration left out as warm-up; the median and the spread
(min-max) are reported. Samples per second = replies per iteration / median seconds per iteration. A random model
rarely emits its stop token, so nearly every reply has the full length on both sides; the mean reply length
is printed next to the figures so a difference in length cannot hide in them. TRL is optional: without `trl`
the table has the llmfs row and a note.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from llmfs.bench import report as rep
from llmfs.bench.timing import environment

TASK = "builtin:arithmetic?level=1&n=400"


@dataclasses.dataclass(frozen=True)
class Settings:
    prompts: int = 8  # prompts per iteration
    group: int = 8  # replies per prompt
    new_tokens: int = 24  # longest reply
    steps: int = 6  # iterations timed (the first is warm-up)
    lr: float = 2e-5
    seed: int = 0

    @property
    def replies(self) -> int:
        return self.prompts * self.group


QUICK = Settings(prompts=2, group=4, new_tokens=8, steps=3)


def random_chat_checkpoint(out: Path, *, d_model: int = 128, n_layers: int = 4, seed: int = 0) -> Path:
    """A random-initialised modern-stack chat model with a byte tokenizer plus the chat tokens."""
    from llmfs import checkpoint as ck
    from llmfs.model.config import ModelConfig
    from llmfs.model.transformer import Transformer
    from llmfs.tokenizer import save
    from llmfs.tokenizer.byte import ByteTokenizer
    from llmfs.tokenizer.chat import with_chat_tokens

    tok = with_chat_tokens(ByteTokenizer())
    save(tok, out / "tokenizer")
    cfg = ModelConfig(vocab_size=tok.vocab_size, max_seq_len=256, d_model=d_model, n_layers=n_layers,
                      n_heads=d_model // 32)
    net = Transformer(cfg, generator=torch.Generator().manual_seed(seed))
    return ck.save(out / "ckpt", kind="causal_lm", model_config=dataclasses.asdict(cfg), state_dict=net.state_dict(),
                   tokenizer_json=out / "tokenizer" / "tokenizer.json")


def _spread(seconds: list[float]) -> dict:
    """Median and range of per-iteration seconds after the first (warm-up) iteration."""
    timed = seconds[1:] or seconds
    return {"median_s": statistics.median(timed), "min_s": min(timed), "max_s": max(timed)}


def run_llmfs(checkpoint: Path, s: Settings, work: Path) -> dict:
    from llmfs.config import from_dict
    from llmfs.train.grpo import GRPORecipe, run

    recipe = from_dict(GRPORecipe, {
        "init_from": str(checkpoint),
        "run": {"name": "llmfs-grpo", "out_dir": str(work), "seed": s.seed, "device": "cpu"},
        "data": {"train": TASK, "prompts_per_step": s.prompts, "eval_prompts": 0},
        "grpo": {"group_size": s.group, "max_new_tokens": s.new_tokens, "temperature": 1.0, "epochs": 1,
                 "minibatch_size": s.replies, "rewards": {"exact_match": 1.0, "format": 0.1}, "kl_coef": 0.0,
                 "clip_low": 0.2, "clip_high": 0.2, "aggregation": "token", "scale": "group"},
        "optim": {"lr": s.lr, "weight_decay": 0.0},
        "train": {"max_steps": s.steps, "eval_every": 0, "save_every": 0},
        "log": {"every": 1, "console": "none"},
    })
    run(recipe, force=True, quiet=True)
    rows = [json.loads(line) for line in (work / "llmfs-grpo" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    times = [r["time"] for r in train]
    lengths = [r["reply_tokens"] for r in train if "reply_tokens" in r]
    return {"framework": "llmfs", **_spread([b - a for a, b in zip(times, times[1:])]),
            "mean_reply_tokens": statistics.mean(lengths) if lengths else None}


def run_trl(checkpoint: Path, s: Settings, work: Path) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from llmfs.align.rewards import REWARDS
    from llmfs.data.builtin import iter_builtin
    from llmfs.model.hf_files import export_hf

    hf = export_hf(str(checkpoint), str(work / "hf"), None)
    records = list(iter_builtin(TASK))
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}], "answer": r["answer"]}
                              for r in records])

    def reward(completions, answer, **_):  # the same weighted rule rewards as the llmfs run
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [REWARDS["exact_match"](t, {"answer": a}) + 0.1 * REWARDS["format"](t, {"answer": a})
                for t, a in zip(texts, answer)]

    ends: list[float] = []
    lengths: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            ends.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs:
                lengths.append(float(logs["completions/mean_length"]))

    args = GRPOConfig(output_dir=str(work / "trl"), per_device_train_batch_size=s.replies, num_generations=s.group,
                      max_completion_length=s.new_tokens, learning_rate=s.lr, beta=0.0, num_iterations=1,
                      temperature=1.0, epsilon=0.2, loss_type="dapo", scale_rewards="group", use_cpu=True,
                      max_steps=s.steps, logging_steps=1, report_to="none", save_strategy="no", seed=s.seed,
                      bf16=False, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                      disable_tqdm=True)
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(str(hf)), reward_funcs=[reward], args=args,
                          train_dataset=data, processing_class=AutoTokenizer.from_pretrained(str(hf)),
                          callbacks=[Clock()])
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # disable_tqdm makes the Trainer print every log dict instead
    start = time.perf_counter()
    trainer.train()
    marks = [start, *ends]
    seconds = [b - a for a, b in zip(marks, marks[1:])]
    return {"framework": "trl", **_spread(seconds), "mean_reply_tokens": statistics.mean(lengths) if lengths else None}


KEYS = ("framework",)
COLUMNS = (
    rep.Column("framework", "framework"),
    rep.Column("median_s", "s / iteration (min-max)", lambda r: f"{r['median_s']:.3f} ({r['min_s']:.3f}-{r['max_s']:.3f})"),
    rep.Column("samples_per_s", "samples/s", ".1f"),
    rep.Column("mean_reply_tokens", "mean reply tokens", ".1f"),
    rep.Column("vs_trl", "vs TRL", lambda r: f"{r['vs_trl']:.2f}x" if "vs_trl" in r else ""),
)
METRICS = ("samples_per_s",)


def run(checkpoint: str | None = None, *, quick: bool = False, steps: int | None = None, trl: bool = True,
        progress=None) -> dict:
    """The report (llmfs/bench/report.py shape): one row per framework, seconds per iteration and samples/s."""
    import importlib.util

    from llmfs import checkpoint as ck

    settings = QUICK if quick else Settings()
    if steps is not None:
        settings = dataclasses.replace(settings, steps=steps)
    env = environment(torch.device("cpu"), "float32")
    notes = [f"one iteration: {settings.prompts} prompts x {settings.group} replies, <= {settings.new_tokens} new "
             f"tokens, one update; {settings.steps} iterations, the first left out as warm-up"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ckpt = ck.resolve(checkpoint) if checkpoint else random_chat_checkpoint(work / "model", seed=settings.seed)
        runners = [("llmfs", run_llmfs)]
        if not trl:
            notes.append("TRL skipped (--no-trl)")
        elif importlib.util.find_spec("trl") is None:
            notes.append("TRL is not installed (pip install 'llmfs[trl]'): llmfs only")
        else:
            import trl as trl_module

            env["trl"] = trl_module.__version__
            runners.append(("trl", run_trl))
        for name, runner in runners:
            row = runner(ckpt, settings, work)
            row["samples_per_s"] = settings.replies / row["median_s"]
            rows.append(row)
            if progress is not None:
                progress(row)
    if len(rows) == 2:
        rows[0]["vs_trl"] = rows[0]["samples_per_s"] / rows[1]["samples_per_s"]
    return rep.make("grpo", env, KEYS, rows, notes)
