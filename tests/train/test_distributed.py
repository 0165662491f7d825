"""Two gloo processes under torchrun (DDP and FSDP2) reach the same losses as one process with the same global
batch, and their checkpoint loads in a single process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from llmfs import checkpoint as ck
from llmfs.config import from_dict, load_recipe
from llmfs.train.pretrain import PretrainRecipe, run

from .test_pretrain import TINY, records, weights


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_match_one(tmp_path, parallel):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY.format(out=tmp_path / "runs"))
    common = ["train.max_steps=8", "schedule.warmup_steps=2", "train.save_every=4", "log.every=1",
              "data.micro_batch_size=2"]  # 8 rows: 2 processes x 2 micro-batches x 2 rows
    single = run(load_recipe(p, PretrainRecipe, common + ["run.name=single"]), quiet=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    args = [a for kv in common + ["run.name=multi", f'train.parallel="{parallel}"'] for a in ("--set", kv)]
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "llmfs", "pretrain", str(p), "--quiet", *args],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    multi = tmp_path / "runs" / "multi"
    la = [r["loss"] for r in records(single.parent)]
    lb = [r["loss"] for r in records(multi)]
    assert len(la) == len(lb) == 8
    assert lb == pytest.approx(la, abs=1e-5)
    # the checkpoint written by two processes is one full file that loads in this single process
    from llmfs.model.config import ModelConfig
    from llmfs.model.transformer import Transformer

    ckpt = ck.open_checkpoint(multi)
    model = Transformer(from_dict(ModelConfig, dict(ckpt.model_config)))
    ck.load_weights(ckpt, model)
    wa, wb = weights(single), weights(ckpt.path)
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5, msg=k)
    assert ck.load_resume_state(ckpt).trainer["step"] == 8


def test_sft_on_two_processes_matches_one(tmp_path):
    """SFT's loss is the token mean of the global batch however it is split: 2 DDP processes x 2 micro-batches
    reach the losses of one process (packed rows hold different conversations on each rank)."""
    from llmfs.train.sft import SFTRecipe
    from llmfs.train.sft import run as sft

    from .test_sft import make_base, recipe_file, rows

    p = recipe_file(tmp_path, make_base(tmp_path / "base"))
    common = ["train.max_steps=4", "train.save_every=0", "log.every=1", "eval.baseline=false", "eval.examples=0",
              "data.micro_batch_size=2"]
    single = sft(load_recipe(p, SFTRecipe, common + ["run.name=single"]), quiet=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    args = [a for kv in common + ["run.name=multi"] for a in ("--set", kv)]
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "llmfs", "sft", str(p), "--quiet", *args],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    la = [r["loss"] for r in rows(single.parent)]
    lb = [r["loss"] for r in rows(tmp_path / "runs" / "multi")]
    assert len(la) == len(lb) == 4 and lb == pytest.approx(la, abs=1e-5)
