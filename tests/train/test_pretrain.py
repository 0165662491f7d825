"""`llmfs pretrain` end to end on tiny recipes: loss drops, exact resume, non-finite guard, bad recipes."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llmfs import checkpoint as ck
from llmfs.cli import main
from llmfs.config import ConfigError, load_recipe
from llmfs.errors import LlmfsError
from llmfs.train.pretrain import PretrainRecipe, run

TINY = """
[run]
name = "tiny"
out_dir = "{out}"

[model]
vocab_size = 264
max_seq_len = 64
d_model = 48
n_layers = 2
n_heads = 4
n_kv_heads = 2

[tokenizer]
kind = "byte"

[data]
sources = {{ "builtin:stories?size=200000" = 1.0 }}
seq_len = 32
batch_size = 8
eval_windows = 8

[optim]
lr = 3e-3

[schedule]
warmup_steps = 5

[train]
max_steps = 40
eval_every = 0
sample_every = 0
save_every = 20
sample_prompts = ["Once upon"]
sample_tokens = 8

[log]
every = 5
console = "none"
"""


def tiny(tmp_path: Path, *overrides: str) -> PretrainRecipe:
    tmp_path.mkdir(parents=True, exist_ok=True)
    p = tmp_path / "tiny.toml"
    p.write_text(TINY.format(out=tmp_path / "runs"))
    return load_recipe(p, PretrainRecipe, overrides)


def records(run_dir: Path, kind: str = "train") -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / ck.MODEL_FILE))


def test_loss_drops_and_final_checkpoint_is_complete(tmp_path):
    final = run(tiny(tmp_path), quiet=True)
    run_dir = final.parent
    train = records(run_dir)
    assert [r["step"] for r in train] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert train[-1]["loss"] < train[0]["loss"] - 0.5  # byte-level: ~5.6 nats at init (ln 264)
    ev = records(run_dir, "eval")[-1]
    # uniform over 264 ids is 8.0 bits per byte, over the ~60 characters stories use ~5.9
    assert ev["step"] == 40 and ev["val_bpb"] < 5.0 and math.isfinite(ev["val_loss"])
    assert records(run_dir, "sample")[-1]["text"].startswith("Once upon")
    ckpt = ck.open_checkpoint(final)
    assert ckpt.kind == "causal_lm" and ckpt.has_resume_state and ckpt.extra["step"] == 40
    assert (run_dir / "recipe.toml").read_text() == ckpt.recipe_toml
    from llmfs.model.config import ModelConfig
    from llmfs.model.transformer import Transformer
    from llmfs.config import from_dict

    model = Transformer(from_dict(ModelConfig, dict(ckpt.model_config)))
    ck.load_weights(ckpt, model)
    assert sorted(p.name for p in run_dir.iterdir()) == ["data", "final", "latest", "metrics.jsonl", "recipe.toml",
                                                        "step-000020", "tokenizer"]


def test_a_start_up_peak_that_came_out_low_is_measured_again(tmp_path, monkeypatch):
    """MFU above 1 means the start-up matmul peak was measured while something else had the CPU: the loop
    measures it once more and keeps the higher, so the logged MFU stays a fraction."""
    import llmfs.train.pretrain as pretrain

    monkeypatch.setattr(pretrain, "peak_flops", lambda rt: 1.0)  # a start-up peak of 1 FLOP/s
    train = records(run(tiny(tmp_path), quiet=True).parent)
    assert all(0 < r["mfu"] < 1 for r in train), [r["mfu"] for r in train]


def test_mfu_is_per_device_over_one_device_peak():
    from llmfs.train.loop import model_flops_utilization

    # 6e6 FLOPs per token at 1,000 tokens/s over the global batch of 2 processes: 3e9 FLOP/s each, peak 1e10
    assert model_flops_utilization(6e6, 1000.0, 1e10, devices=2) == pytest.approx(0.3)
    assert model_flops_utilization(6e6, 1000.0, 1e10, devices=1) == pytest.approx(0.6)


def test_stop_and_resume_is_bitwise_identical(tmp_path):
    import shutil

    full = run(tiny(tmp_path), quiet=True)  # 40 steps; step-000020 holds the state an interrupted run would save
    src, dst = full.parent, tmp_path / "resumed" / "tiny"
    dst.mkdir(parents=True)
    for name in ("recipe.toml", "tokenizer", "data", "step-000020"):
        (shutil.copytree if (src / name).is_dir() else shutil.copyfile)(src / name, dst / name)
    (dst / "latest").write_text("step-000020\n")
    (tmp_path / "resumed" / "tiny.toml").write_text(TINY.format(out=tmp_path / "runs"))
    recipe = load_recipe(tmp_path / "resumed" / "tiny.toml", PretrainRecipe,
                         [f'run.out_dir="{tmp_path / "resumed"}"'])
    # run.out_dir differs from the first run, so the recipe text differs: continue it explicitly
    final = run(recipe, resume=True, force=True, quiet=True)
    a, b = records(src), records(dst)
    assert [r["step"] for r in b] == [25, 30, 35, 40]
    assert [r["loss"] for r in a if r["step"] > 20] == [r["loss"] for r in b]
    wa, wb = weights(full), weights(final)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=0, msg=k)


def test_the_grad_scaler_resumes_where_it_was(tmp_path, monkeypatch):
    """fp16's GradScaler (CUDA only; a CPU one here, which scales fp32 losses by powers of two, exactly) saves its
    scale and growth counter in trainer_state.json: the resumed run continues with the scale the interrupted one
    had reached (a fresh scaler would restart at its initial scale and skip steps the uninterrupted run took),
    and ends in the same state and weights as the run that never stopped."""
    import shutil

    from llmfs.runtime import Runtime

    monkeypatch.setattr(Runtime, "grad_scaler", lambda self: torch.amp.GradScaler("cpu", init_scale=2.0 ** 10,
                                                                                  growth_interval=3))
    full = run(tiny(tmp_path, "train.max_steps=30", "train.save_every=10"), quiet=True)
    src, dst = full.parent, tmp_path / "resumed" / "tiny"
    dst.mkdir(parents=True)
    for name in ("recipe.toml", "tokenizer", "data", "step-000010"):
        (shutil.copytree if (src / name).is_dir() else shutil.copyfile)(src / name, dst / name)
    (dst / "latest").write_text("step-000010\n")
    again = run(tiny(tmp_path, "train.max_steps=30", "train.save_every=10", f'run.out_dir="{tmp_path / "resumed"}"'),
                resume=True, force=True, quiet=True)
    state = lambda path: json.loads((path / ck.TRAINER_FILE).read_text())["grad_scaler"]  # noqa: E731
    assert state(src / "step-000010") == {"scale": 2.0 ** 13, "growth_factor": 2.0, "backoff_factor": 0.5,
                                          "growth_interval": 3, "_growth_tracker": 1}  # 3 growths in 10 steps
    assert state(again) == state(full) and state(full)["scale"] == 2.0 ** 20
    wa, wb = weights(full), weights(again)
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=0, msg=k)


def test_changed_recipe_refused_unless_forced(tmp_path):
    run(tiny(tmp_path, "train.max_steps=10", "train.save_every=5", "schedule.warmup_steps=2"), quiet=True)
    with pytest.raises(LlmfsError, match=r"holds a run with a different recipe \(changed: optim.lr\)"):
        run(tiny(tmp_path, "train.max_steps=10", "train.save_every=5", "schedule.warmup_steps=2",
                 "optim.lr=1e-3"), quiet=True)
    final = run(tiny(tmp_path, "train.max_steps=12", "train.save_every=5", "schedule.warmup_steps=2"),
                force=True, quiet=True)
    assert records(final.parent)[-1]["step"] == 12
    with pytest.raises(LlmfsError, match="has no checkpoint to resume from"):
        run(tiny(tmp_path, "run.name=other"), resume=True, quiet=True)


def test_finished_run_without_step_checkpoints_continues_from_final(tmp_path):
    """save_every = 0 leaves only final/: a longer run of the same recipe continues it (steps 7-10 appended, the
    same losses as one 10-step run), it neither starts over nor silently appends a second run's metrics."""
    steps = ("train.save_every=0", "schedule.name=\"constant\"", "schedule.warmup_steps=0", "log.every=1")
    run(tiny(tmp_path / "a", "train.max_steps=6", *steps), quiet=True)
    with pytest.raises(LlmfsError, match=r"holds a run with a different recipe \(changed: train.max_steps\)"):
        run(tiny(tmp_path / "a", "train.max_steps=10", *steps), quiet=True)
    final = run(tiny(tmp_path / "a", "train.max_steps=10", *steps), force=True, quiet=True)
    whole = run(tiny(tmp_path / "b", "train.max_steps=10", *steps), quiet=True)
    assert [r["step"] for r in records(final.parent)] == [r["step"] for r in records(whole.parent)]
    assert [r["loss"] for r in records(final.parent)] == [r["loss"] for r in records(whole.parent)]


def test_extended_run_interrupted_resumes_from_its_newest_checkpoint(tmp_path):
    """A finished run (final/ at step 4) continued to 10 steps and killed after its step-8 checkpoint holds an old
    final/ and a newer `latest`: the next attempt resumes from step 8, not from the old final/ (which would redo
    steps 5-8), and the history ends as one 10-step run's."""
    import shutil

    from llmfs.train.loop import check_run_dir

    steps = ("schedule.name=\"constant\"", "schedule.warmup_steps=0", "log.every=1")
    first = run(tiny(tmp_path / "a", "train.max_steps=4", "train.save_every=0", *steps), quiet=True)
    shutil.copytree(first, tmp_path / "final-at-4")
    longer = tiny(tmp_path / "a", "train.max_steps=10", "train.save_every=4", *steps)
    final = run(longer, force=True, quiet=True)
    shutil.rmtree(final)  # killed after step 9, before the final save: final/ is still step 4's
    shutil.copytree(tmp_path / "final-at-4", final)
    assert (final.parent / "latest").read_text().strip() == "step-000008"
    recipe_text = (final.parent / "recipe.toml").read_text()
    assert check_run_dir(final.parent, recipe_text, resume=False, force=False) == final.parent / "step-000008"
    again = run(longer, quiet=True)
    whole = run(tiny(tmp_path / "b", "train.max_steps=10", "train.save_every=4", *steps), quiet=True)
    assert [r["step"] for r in records(again.parent)] == list(range(1, 11))
    assert [r["loss"] for r in records(again.parent)] == [r["loss"] for r in records(whole.parent)]


def test_rerunning_the_command_resumes_and_the_metrics_are_one_history(tmp_path):
    """The same command after an interruption continues from the last checkpoint without --resume, and
    metrics.jsonl ends as one run's history: what the interrupted attempt logged after its checkpoint is
    replaced, not duplicated. An attempt that died before its first checkpoint leaves nothing behind."""
    import shutil

    steps = ("train.max_steps=10", "train.save_every=5", "log.every=1", "schedule.warmup_steps=2")
    whole = run(tiny(tmp_path / "a", *steps), quiet=True)
    run_dir = whole.parent
    original = records(run_dir)
    shutil.rmtree(whole)  # as if killed after step 10 was logged, before the final save
    (run_dir / "latest").write_text("step-000005\n")
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 11, "lo')  # a line torn by the kill
    again = run(tiny(tmp_path / "a", *steps), quiet=True)  # no --resume, no --force
    assert [r["step"] for r in records(again.parent)] == list(range(1, 11))
    assert [r["loss"] for r in records(again.parent)] == [r["loss"] for r in original]
    assert [r["step"] for r in records(again.parent, "eval")] == [10]
    # a run that died before any checkpoint: the next attempt starts over on a clean metrics file
    early = tmp_path / "b" / "runs" / "tiny"
    run(tiny(tmp_path / "b", *steps), quiet=True)
    for name in ("final", "step-000005", "latest"):
        (shutil.rmtree if (early / name).is_dir() else os.remove)(early / name)
    fresh = run(tiny(tmp_path / "b", *steps), quiet=True)
    assert [r["step"] for r in records(fresh.parent)] == list(range(1, 11))


def test_non_finite_loss_stops_before_the_update(tmp_path, monkeypatch):
    import llmfs.train.step as S

    real, calls = S.lm_loss, {"n": 0}

    def poisoned(logits, targets, ignore_index=-100):
        calls["n"] += 1
        loss = real(logits, targets, ignore_index)
        return loss * float("nan") if calls["n"] == 13 else loss

    monkeypatch.setattr(S, "lm_loss", poisoned)
    recipe = tiny(tmp_path, "train.save_every=10")
    with pytest.raises(LlmfsError, match=r"non-finite loss or gradient at step 13 .* the update was not applied; "
                                         r"the last good checkpoint is .*step-000010"):
        run(recipe, quiet=True)
    ckpt = ck.open_checkpoint(tmp_path / "runs" / "tiny")
    assert ckpt.path.name == "step-000010"
    assert all(torch.isfinite(t).all() for t in weights(ckpt.path).values())


def test_non_finite_gradient_under_a_finite_loss_also_stops(tmp_path, monkeypatch):
    real = torch.nn.utils.clip_grad_norm_
    calls = {"n": 0}

    def poisoned_norm(params, max_norm, *args, **kwargs):
        calls["n"] += 1
        norm = real(params, max_norm, *args, **kwargs)
        return norm * float("inf") if calls["n"] == 7 else norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", poisoned_norm)
    with pytest.raises(LlmfsError, match=r"non-finite loss or gradient at step 7 \(loss \d.*grad norm inf\)"):
        run(tiny(tmp_path, "train.save_every=5"), quiet=True)
    assert ck.resolve(tmp_path / "runs" / "tiny").name == "step-000005"


def test_bits_per_byte_hand_computed():
    """A model that is uniform over 4 ids: every scored token costs ln 4 nats; special ids (0 bytes) are not
    scored, and bits per byte divide the nats by ln 2 and by the bytes the scored targets stand for."""
    import numpy as np

    from llmfs.train.evaluate import evaluate_lm, mixture_eval

    class Uniform(torch.nn.Module):
        def forward(self, x):
            return type("Out", (), {"logits": torch.zeros(*x.shape, 4)})()

    byte_lengths = torch.tensor([1, 2, 3, 0])  # id 3 is a special token
    windows = np.array([[0, 1, 2, 3], [3, 2, 2, 1]])  # targets 1, 2, 3 | 2, 2, 1: five scored, 2+3+3+3+2 bytes
    r = evaluate_lm(Uniform(), windows, byte_lengths, batch_size=1, device=torch.device("cpu"),
                    autocast=contextlib.nullcontext)
    assert r["loss"] == pytest.approx(math.log(4), rel=1e-6)  # float32 cross-entropy
    assert r["bpb"] == pytest.approx(5 * math.log(4) / math.log(2) / 13, rel=1e-6)
    both = mixture_eval({"a": {"loss": 1.0, "bpb": 2.0}, "b": {"loss": 3.0, "bpb": 6.0}}, {"a": 0.75, "b": 0.25})
    assert both == {"val_loss": 1.5, "val_bpb": 3.0, "a/val_loss": 1.0, "a/val_bpb": 2.0, "b/val_loss": 3.0,
                    "b/val_bpb": 6.0}


def test_which_non_finite_steps_count_against_the_skip_budget():
    from llmfs.train.step import StepResult, counts_as_failure

    def step(loss, norm):
        return StepResult(loss=loss, aux_loss=0.0, grad_norm=norm, finite=math.isfinite(loss) and math.isfinite(norm),
                          expert_load=())

    nan, inf = float("nan"), float("inf")
    assert not counts_as_failure(step(2.0, 1.0), scaled=False) and not counts_as_failure(step(2.0, 1.0), scaled=True)
    for bad in (step(nan, 1.0), step(2.0, nan), step(inf, inf)):  # fp32 / bf16: every non-finite step counts
        assert counts_as_failure(bad, scaled=False)
    # fp16 with a GradScaler: gradient overflow under a finite loss is the scaler's routine skip, not a failure;
    # a non-finite loss (the forward diverged) is one, whatever the gradients did
    assert not counts_as_failure(step(2.0, inf), scaled=True) and not counts_as_failure(step(2.0, nan), scaled=True)
    assert counts_as_failure(step(nan, 1.0), scaled=True) and counts_as_failure(step(inf, inf), scaled=True)


def test_mixture_logs_the_weighted_validation_loss_and_each_source(tmp_path):
    text = tmp_path / "mats.jsonl"
    text.write_text("".join(json.dumps({"text": f"The cat sat on mat number {i}. It was a good mat."}) + "\n"
                            for i in range(3000)))
    stories = "builtin:stories?size=200000"
    final = run(tiny(tmp_path, f'data.sources={{"{stories}" = 3.0, "{text}" = 1.0}}', "train.max_steps=10",
                     "train.save_every=0"), quiet=True)
    ev = records(final.parent, "eval")[-1]
    for key in ("val_loss", "val_bpb"):
        a, b = ev[f"{stories}/{key}"], ev[f"{text}/{key}"]
        assert a != b and ev[key] == pytest.approx((3 * a + b) / 4, rel=1e-12)  # the mixture's weights


def test_skip_budget_counts_and_continues(tmp_path, monkeypatch):
    import llmfs.train.step as S

    real, calls = S.lm_loss, {"n": 0}

    def poisoned(logits, targets, ignore_index=-100):
        calls["n"] += 1
        loss = real(logits, targets, ignore_index)
        return loss * float("inf") if calls["n"] in (3, 4) else loss

    monkeypatch.setattr(S, "lm_loss", poisoned)
    final = run(tiny(tmp_path, "train.max_skips=2", "train.max_steps=10", "schedule.warmup_steps=2"), quiet=True)
    assert records(final.parent)[-1]["skipped"] == 2
    assert all(torch.isfinite(t).all() for t in weights(final).values())


@pytest.mark.parametrize("override,message", [
    ("schedule.warmup_steps=100", "schedule.warmup_steps: warmup of 100 steps does not fit in a run of 40 steps"),
    ("model.window=50", "model.window: 50 is larger than the training context data.seq_len 32"),
    ("data.seq_len=128", "data.seq_len: 128 is longer than model.max_seq_len 64"),
    ('optim.name="sgd"', "optim.name: 'sgd' is not one of 'adamw', 'adamw_scratch'"),
    ("data.micro_batch_size=3", None),
    ('data.text_field=" "', 'data.text_field: must name a column, e.g. "text" or "content"'),
    ("train.sample_tokens=64", "train.sample_tokens: 64 sampled tokens do not fit the context model.max_seq_len 64"),
])
def test_bad_recipe_values_fail_before_any_work(tmp_path, override, message):
    if message is None:
        with pytest.raises(LlmfsError, match="data.micro_batch_size 3 does not divide the 8 windows"):
            run(tiny(tmp_path, override), quiet=True)
    else:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            tiny(tmp_path, override)
    assert not (tmp_path / "runs" / "tiny" / "metrics.jsonl").exists()


def test_jsonl_source_with_its_own_text_field_and_run_local_datasets_cache(tmp_path, monkeypatch):
    import datasets

    default = tmp_path / "hf_home" / "datasets"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", default)
    corpus = tmp_path / "stories.jsonl"
    corpus.write_text("".join(json.dumps({"story": f"Tom saw {i} red birds by the river.", "id": i}) + "\n"
                              for i in range(300)), encoding="utf-8")
    sources = f'data.sources={{"{corpus}" = 1.0}}'
    with pytest.raises(LlmfsError, match=r"stories.jsonl: rows have no 'text' field \(fields: story, id\); map a "
                                         r'column to it: set data.text_field = "story"$'):
        run(tiny(tmp_path, sources, "train.max_steps=6", "schedule.warmup_steps=2"), quiet=True)
    final = run(tiny(tmp_path, sources, "train.max_steps=6", "schedule.warmup_steps=2", 'data.text_field="story"'), force=True, quiet=True)
    run_dir = final.parent
    assert any((run_dir / "data" / "hf_cache").iterdir())  # datasets wrote here, and nowhere else
    assert not default.exists() or not any(default.iterdir())
    (written,) = (run_dir / "data").glob("00-*/train/source.json")
    assert json.loads(written.read_text()) == {"spec": str(corpus), "split": "train", "text_field": "story",
                                               "valid_split": "hash", "valid_fraction": 0.01}


def test_tail_split_cuts_the_concatenation_at_the_exact_character():
    from llmfs.train.pretrain_data import tail_split

    docs = ["abcdefgh", "ij", "klmnopqrst"]  # 20 characters; 0.25 held out -> the cut is before character 15
    assert list(tail_split(lambda: iter(docs), "train", 0.25)) == ["abcdefgh", "ij", "klmno"]
    assert list(tail_split(lambda: iter(docs), "valid", 0.25)) == ["pqrst"]
    assert list(tail_split(lambda: iter(docs), "valid", 0.6)) == ["ij", "klmnopqrst"]  # int(20 * 0.4) = 8
    text = "".join(docs)  # nanoGPT's prepare.py: data[:int(n * 0.9)], data[int(n * 0.9):]
    n = len(text)
    assert "".join(tail_split(lambda: iter(docs), "train", 0.1)) == text[:int(n * 0.9)]
    assert "".join(tail_split(lambda: iter(docs), "valid", 0.1)) == text[int(n * 0.9):]


def test_one_document_text_file_trains_with_a_tail_validation_split(tmp_path):
    corpus = tmp_path / "play.txt"  # no <|endoftext|> lines: the whole file is one document
    lines = [f"Speaker {i % 7}: the {['king', 'queen', 'fool'][i % 3]} walks to the {i % 11} gate.\n"
             for i in range(400)]
    corpus.write_text("".join(lines), encoding="utf-8")
    sources = f'data.sources={{"{corpus}" = 1.0}}'
    with pytest.raises(LlmfsError, match=r"play.txt: the (train|valid) split holds no documents; add data, or "
                                         r"hold out the end of the text with data.valid_split = \"tail\""):
        run(tiny(tmp_path, sources, "train.max_steps=4", "schedule.warmup_steps=2"), quiet=True)
    final = run(tiny(tmp_path, sources, "train.max_steps=4", "schedule.warmup_steps=2", 'data.valid_split="tail"',
                     "data.valid_fraction=0.1"), force=True, quiet=True)
    from llmfs.data.shards import TokenShards

    (train_dir,) = (final.parent / "data").glob("00-*/train")
    (valid_dir,) = (final.parent / "data").glob("00-*/valid")
    n = len(corpus.read_bytes())  # ASCII and a byte tokenizer: one token per character
    assert TokenShards(train_dir).num_tokens - 1 == int(n * 0.9)  # + one <|endoftext|> per document
    assert TokenShards(valid_dir).num_tokens - 1 == n - int(n * 0.9)
    assert math.isfinite(records(final.parent, "eval")[-1]["val_bpb"])


def test_batch_not_divisible_by_processes():
    from llmfs.train.loop import plan_batches

    with pytest.raises(LlmfsError, match="data.batch_size 8 is not divisible by the 3 processes"):
        plan_batches(8, 0, 3)
    assert plan_batches(8, 0, 2) == (4, 1)
    with pytest.raises(LlmfsError, match="micro_batch_size 3 does not divide the 4 windows"):
        plan_batches(8, 3, 2)


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    a = run(tiny(tmp_path / "a", "train.max_steps=6", "schedule.warmup_steps=2"), quiet=True)
    b = run(tiny(tmp_path / "b", "train.max_steps=6", "schedule.warmup_steps=2", "data.micro_batch_size=2"),
            quiet=True)
    la, lb = [r["loss"] for r in records(a.parent)], [r["loss"] for r in records(b.parent)]
    assert la == pytest.approx(lb, abs=1e-5)


def test_cli_pretrain_and_sigint_saves_and_resumes(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY.format(out=tmp_path / "runs"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "llmfs", "pretrain", str(p), "--set", "train.max_steps=100000",
                             "--set", "train.save_every=0", "--set", "log.every=1", "--force"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics = tmp_path / "runs" / "tiny" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped at step" in err and "checkpoint:" in out
    latest = ck.resolve(tmp_path / "runs" / "tiny")
    assert latest.name.startswith("step-") and ck.open_checkpoint(latest).has_resume_state
    assert main(["pretrain", str(p), "--quiet", "--set", "train.max_steps=100000", "--set", "train.save_every=0",
                 "--set", "log.every=1", "--set", "schedule.warmup_steps=100000"]) == 2  # changed recipe


def test_moe_losses_added_and_expert_load_logged(tmp_path):
    final = run(tiny(tmp_path, "model.n_experts=4", "model.top_k=2", "train.max_steps=10",
                     "schedule.warmup_steps=2"), quiet=True)
    last = records(final.parent)[-1]
    assert last["moe_aux"] > 0 and 0.25 <= last["expert_load_max"] <= 1.0  # 4 experts: max share >= 1/4
    assert 0 < last["moe_z"] < last["moe_aux"] and last["moe_dropped"] == 0  # no capacity: nothing dropped
    loads = last["expert_load"]  # per layer, per expert: shares of the assignments
    assert len(loads) == 2 and all(len(x) == 4 and abs(sum(x) - 1) < 1e-3 for x in loads)
    assert max(map(max, loads)) == pytest.approx(last["expert_load_max"], abs=1e-4)
    capped = run(tiny(tmp_path / "cap", "model.n_experts=4", "model.top_k=2", "model.capacity_factor=0.5",
                      "train.max_steps=4", "schedule.warmup_steps=2"), quiet=True)
    assert records(capped.parent)[-1]["moe_dropped"] > 0  # half the fair share per expert: tokens are dropped


def test_activation_checkpointing_gives_the_same_losses(tmp_path):
    a = run(tiny(tmp_path / "a", "train.max_steps=6", "schedule.warmup_steps=2"), quiet=True)
    b = run(tiny(tmp_path / "b", "train.max_steps=6", "schedule.warmup_steps=2",
                 "train.activation_checkpointing=true"), quiet=True)
    assert [r["loss"] for r in records(b.parent)] == pytest.approx([r["loss"] for r in records(a.parent)],
                                                                     abs=1e-6)
    ck.load_weights(ck.open_checkpoint(b), __import__("llmfs.model.transformer", fromlist=["T"]).Transformer(
        load_recipe(b / "recipe.toml", PretrainRecipe).model))


@pytest.mark.slow
def test_small_recipe_end_to_end(tmp_path):
    """The README's main command. Measured 2026-11-22 on the 2-core dev machine: 6 min 12 s, final validation
    0.219 bits per byte (0.32 after 250 steps); the bound leaves room for other machines' numerics. 2026-12-05,
    with the recipe's bf16-input matmuls on a 2-core AMX Xeon: passes in 3 min 05 s."""
    recipes = Path(__file__).resolve().parents[2] / "recipes"
    final = run(load_recipe(recipes / "small.toml", PretrainRecipe, [f'run.out_dir="{tmp_path}"']), quiet=True)
    ev = records(final.parent, "eval")[-1]
    assert ev["step"] == 1500 and ev["val_bpb"] < 0.26
    assert records(final.parent, "sample")[-1]["text"].count(".") >= 3


def test_compiled_training_matches_eager_and_resumes(tmp_path):
    """train.compile = true compiles the forward and the loss together (llmfs/train/loop.py): the same losses as
    eager up to kernel rounding, the same checkpoint format, and a compiled run resumes where it stopped."""
    common = ["train.max_steps=6", "schedule.warmup_steps=2", "train.save_every=3", "log.every=1"]
    eager = run(tiny(tmp_path / "eager", *common), quiet=True)
    compiled = run(tiny(tmp_path / "compiled", *common, "train.compile=true"), quiet=True)
    le, lc = [r["loss"] for r in records(eager.parent)], [r["loss"] for r in records(compiled.parent)]
    assert len(lc) == 6 and lc == pytest.approx(le, rel=1e-4)
    assert lc[-1] < lc[0]
    we, wc = weights(eager), weights(compiled)
    assert we.keys() == wc.keys()  # no "_orig_mod." prefixes leak into the checkpoint
    for k in we:
        torch.testing.assert_close(wc[k], we[k], rtol=1e-3, atol=1e-4, msg=k)
    # stopped after step 3, resumed with compile: steps 4-6 continue from the step-3 checkpoint
    import shutil

    shutil.rmtree(compiled)
    resumed = run(tiny(tmp_path / "compiled", *common, "train.compile=true"), resume=True, quiet=True)
    lr_ = [r["loss"] for r in records(resumed.parent)]
    assert lr_[-3:] == pytest.approx(lc[-3:], rel=1e-5)
