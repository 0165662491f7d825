"""Two gloo processes under torchrun (DDP and FSDP2) reach the same losses as one process with the same global
batch, and their checkpoint loads in a single process."""

from __future__ import annotations

import contextlib
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


def test_fsdp_moe_with_experts_idle_on_one_rank_matches_one_process(tmp_path):
    """16 experts, top-1, 8 tokens per process and micro-batch: every step some expert gets tokens on one rank and
    none on the other, so its parameters have a gradient on one rank only. FSDP2 must still reduce-scatter them
    on both (unused parameters count as zeros): the run finishes and follows one process."""
    p = tmp_path / "tiny.toml"
    p.write_text(TINY.format(out=tmp_path / "runs"))
    common = ["train.max_steps=4", "schedule.warmup_steps=1", "train.save_every=0", "log.every=1",
              "data.seq_len=8", "data.batch_size=2", "model.n_experts=16", "model.top_k=1",
              # the balance and z losses are per-process statistics (as in every data-parallel MoE): off here, so
              # the two runs optimise the same objective
              "model.aux_loss_coef=0", "model.z_loss_coef=0"]
    single = run(load_recipe(p, PretrainRecipe, common + ["run.name=single"]), quiet=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    args = [a for kv in common + ["run.name=multi", 'train.parallel="fsdp"'] for a in ("--set", kv)]
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "llmfs", "pretrain", str(p), "--quiet", *args],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    la, lb = [r["loss"] for r in records(single.parent)], [r["loss"] for r in records(tmp_path / "runs" / "multi")]
    # step 1 exactly; after it, close: an expert idle in the whole global batch has a zero gradient under FSDP
    # (its true gradient; AdamW's momentum and weight decay still move it) where one process leaves its gradient
    # None and AdamW skips it (0.2% apart by step 4 here). Without the fix the second step crashed or hung.
    assert len(la) == len(lb) == 4 and lb[0] == pytest.approx(la[0], abs=1e-5) and lb == pytest.approx(la, rel=1e-2)


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


def _worker_pid(parent: int, rank: int) -> int | None:
    """The pid of torchrun's worker with RANK=rank (a child of `parent`), from /proc."""
    from pathlib import Path

    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (d / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in env:
            return int(d.name)
    return None


@pytest.mark.skipif(not os.path.exists("/proc/self/environ"), reason="finds torchrun's workers through /proc")
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_a_signal_to_one_rank_stops_every_rank_after_the_same_step(tmp_path, parallel):
    """torchrun delivers signals to each worker on its own: SIGTERM to rank 1 alone must still stop both ranks
    after one agreed step with one loadable checkpoint (before, rank 1 saved and left while rank 0 waited in its
    next collective: a hang)."""
    import signal
    import time

    p = tmp_path / "tiny.toml"
    p.write_text(TINY.format(out=tmp_path / "runs"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    sets = ["train.max_steps=100000", "train.save_every=0", "log.every=1", f'train.parallel="{parallel}"']
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "llmfs", "pretrain", str(p), "--quiet",
                             *[a for kv in sets for a in ("--set", kv)]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics = tmp_path / "runs" / "tiny" / "metrics.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        time.sleep(0.2)
    rank1 = _worker_pid(proc.pid, 1)
    assert rank1 is not None, "torchrun's rank-1 worker not found"
    os.kill(rank1, signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the ranks did not stop together (hang after a signal to one rank)")
    assert proc.returncode == 0, err[-3000:]
    assert "stopped at step" in err
    latest = ck.resolve(tmp_path / "runs" / "tiny")
    ckpt = ck.open_checkpoint(latest)
    assert latest.name.startswith("step-") and ckpt.has_resume_state
    assert ck.load_resume_state(ckpt).trainer["step"] == int(latest.name.split("-")[1])


def _accumulation_counts(store_path: str) -> dict:
    """All-reduces run by DDP in one train_step of 4 micro-batches, with and without no_sync (a one-process
    gloo group; run in a child process by the test below, so a stuck group can only fail it, never hang it)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from llmfs.train import distributed as D
    from llmfs.train.step import train_step

    dist.init_process_group("gloo", store=dist.FileStore(store_path, 1), rank=0, world_size=1)
    try:
        calls = []

        def counting(state, bucket):  # the default all-reduce, counted
            calls.append(bucket.index())
            fut = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
            return fut.then(lambda f: f.value()[0])

        def loss_fn(model, x, y):
            return torch.nn.functional.mse_loss(model(x), y), None

        torch.manual_seed(0)
        micro = [(torch.randn(4, 8), torch.randn(4, 2)) for _ in range(4)]
        counts = {}
        for name, use_no_sync in (("no_sync", True), ("plain", False)):
            model = DistributedDataParallel(torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 2)))
            model.register_comm_hook(None, counting)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            calls.clear()
            train_step(model, opt, micro, loss_fn, autocast=contextlib.nullcontext, grad_clip=1.0,
                       no_sync=D.no_sync(model) if use_no_sync else None)
            counts[name] = len(calls)
        return counts
    finally:
        dist.destroy_process_group()


def test_accumulation_all_reduces_only_on_the_last_micro_batch(tmp_path):
    """DDP inside train_step: with no_sync, 4 micro-batches cost one backward's all-reduces, not four (counted
    by a communication hook)."""
    import json

    code = ("import json; from tests.train.test_distributed import _accumulation_counts; "
            f"print(json.dumps(_accumulation_counts({str(tmp_path / 'store')!r})))")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    assert counts["no_sync"] >= 1 and counts["plain"] == 4 * counts["no_sync"]


def _node_worker(rank: int, world: int, local_ranks: list[int], store_path: str, log_path: str, out_path: str):
    import time

    import torch.distributed as dist

    from llmfs.runtime import DistEnv, Runtime
    from llmfs.train import distributed as D
    from llmfs.train.loop import rank0_then_each_node

    dist.init_process_group("gloo", store=dist.FileStore(store_path, world), rank=rank, world_size=world)
    rt = Runtime(torch.device("cpu"), "fp32", DistEnv(rank, local_ranks[rank], world), 0)

    def prepare():
        with open(log_path, "a") as f:
            f.write(f"start {rank}\n")
        time.sleep(0.3)
        with open(log_path, "a") as f:
            f.write(f"end {rank}\n")
        return rank

    got = rank0_then_each_node(rt, prepare)
    agree, disagree = D.same_on_every_rank(rt, 7), D.same_on_every_rank(rt, 7 if rank else 3)
    with open(f"{out_path}.{rank}", "w") as f:
        f.write(f"{got} {agree} {disagree}")
    dist.destroy_process_group()


def test_rank0_first_then_each_nodes_first_process_then_the_rest(tmp_path):
    """Three processes on two 'nodes' (local ranks 0 | 0, 1): rank 0 prepares the run's files alone, then the
    first process of the other node (its own copy where the filesystem is not shared), then the rest. And a
    value the ranks disagree on is seen as such on every rank (how a node that cannot see the checkpoint rank 0
    resumes from is refused instead of hanging)."""
    import time

    import torch.multiprocessing as tmp_mp

    log, out = tmp_path / "log.txt", tmp_path / "out"
    ctx = tmp_mp.spawn(_node_worker, args=(3, [0, 0, 1], str(tmp_path / "store"), str(log), str(out)), nprocs=3,
                       join=False)
    deadline = time.time() + 300
    while not ctx.join(timeout=1):  # a stuck group fails the test instead of hanging the suite
        if time.time() > deadline:
            for proc in ctx.processes:
                proc.kill()
            pytest.fail("the three processes did not finish")
    lines = log.read_text().splitlines()
    assert lines == ["start 0", "end 0", "start 1", "end 1", "start 2", "end 2"]
    for rank in range(3):
        assert (tmp_path / f"out.{rank}").read_text() == f"{rank} True False"


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_a_one_process_checkpoint_resumes_under_two(tmp_path, parallel):
    """The state written by one process (full weights and optimizer state) resumes under two processes, the
    optimizer state sharded by FSDP, and the continued run gives the uninterrupted run's losses."""
    import shutil

    p = tmp_path / "tiny.toml"
    p.write_text(TINY.format(out=tmp_path / "runs"))
    common = ["train.max_steps=8", "schedule.warmup_steps=2", "train.save_every=4", "log.every=1",
              "data.micro_batch_size=2"]
    single = run(load_recipe(p, PretrainRecipe, common + ["run.name=single"]), quiet=True).parent
    multi = tmp_path / "runs" / "multi"
    multi.mkdir()
    for name in ("tokenizer", "data", "step-000004"):
        shutil.copytree(single / name, multi / name)
    (multi / "latest").write_text("step-000004\n")
    (multi / "recipe.toml").write_text((single / "recipe.toml").read_text())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    args = [a for kv in common + ["run.name=multi", f'train.parallel="{parallel}"'] for a in ("--set", kv)]
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "llmfs", "pretrain", str(p), "--quiet", "--force", *args],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    la = [r["loss"] for r in records(single) if r["step"] > 4]
    lb = [r["loss"] for r in records(multi)]
    assert [r["step"] for r in records(multi)] == [5, 6, 7, 8]
    assert lb == pytest.approx(la, abs=1e-5)
    wa, wb = weights(single / "final"), weights(multi / "final")
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5, msg=k)
