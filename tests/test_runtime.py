"""Runtime: device / precision resolution, seeding, torchrun environment, a real 2-process gloo group."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from llmfs.errors import LlmfsError
from llmfs.runtime import DistEnv, RunConfig, dist_env, resolve_device, resolve_precision, setup, teardown


def test_auto_on_cpu_is_fp32_and_setup_describes_itself(monkeypatch):
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    rt = setup(RunConfig(device="cpu", seed=5))
    assert rt.device == torch.device("cpu") and rt.precision == "fp32" and rt.autocast_dtype is None
    assert rt.grad_scaler() is None and rt.dist == DistEnv(0, 0, 1) and rt.dist.is_main
    assert rt.describe() == "device cpu, precision fp32, seed 5"
    with rt.autocast():
        assert torch.get_autocast_dtype("cpu") is not None  # nullcontext: no autocast entered
        assert not torch.is_autocast_enabled("cpu")


def test_bf16_autocast_on_cpu():
    rt = setup(RunConfig(device="cpu", precision="bf16"))
    with rt.autocast():
        y = torch.nn.functional.linear(torch.randn(2, 4), torch.randn(3, 4))
    assert y.dtype == torch.bfloat16


def test_precision_and_device_errors():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    with pytest.raises(LlmfsError, match="run.precision = 'fp16' needs CUDA"):
        resolve_precision("fp16", cpu)
    if not torch.cuda.is_available():
        with pytest.raises(LlmfsError, match="run.device = 'cuda' but CUDA is not available here"):
            resolve_device("cuda")
        assert resolve_device("auto").type in ("cpu", "mps")


def test_matmul_precision_sets_torch_and_is_described():
    rt = setup(RunConfig(device="cpu", matmul_precision="highest"))
    assert torch.get_float32_matmul_precision() == "highest" and rt.describe().startswith("device cpu, precision fp32,")
    rt = setup(RunConfig(device="cpu"))  # default: TF32 on CUDA, exact fp32 on CPU
    assert torch.get_float32_matmul_precision() == "high" and rt.matmul_precision == "high"
    a, b = torch.randn(64, 48, generator=torch.Generator().manual_seed(0)), torch.randn(48, 32)
    with torch.no_grad():
        high = a @ b
        torch.set_float32_matmul_precision("highest")
        assert torch.equal(high, a @ b)  # 'high' leaves CPU matmuls exact
    rt = setup(RunConfig(device="cpu", matmul_precision="medium"))
    assert torch.get_float32_matmul_precision() == "medium"
    assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        assert "(fp32 matmuls may take bf16 inputs)" in rt.describe()
        medium = a @ b
        if torch.equal(medium, high):  # oneDNN kept this product in fp32 (seen on an AVX512-BF16 EPYC without AMX)
            torch.set_float32_matmul_precision("highest")
            return
        # bf16-rounded inputs, fp32 accumulation (an AMX Xeon): close to exact, not equal
        torch.testing.assert_close(medium, high, atol=0.1, rtol=0.02)
        exact = a.bfloat16().float() @ b.bfloat16().float()
        torch.set_float32_matmul_precision("highest")
        torch.testing.assert_close(medium, exact, atol=1e-4, rtol=1e-4)
    else:
        assert "no bf16 hardware" in rt.describe()


def test_teardown_puts_back_the_process_wide_settings_setup_changed():
    # a Python user who runs a stage from a script or notebook gets their own process-wide settings back
    torch.set_float32_matmul_precision("highest")
    assert not torch.are_deterministic_algorithms_enabled()
    rt = setup(RunConfig(device="cpu", matmul_precision="medium", deterministic=True))
    assert torch.get_float32_matmul_precision() == "medium" and torch.are_deterministic_algorithms_enabled()
    teardown(rt)
    assert torch.get_float32_matmul_precision() == "highest" and not torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        teardown(setup(RunConfig(device="cpu", matmul_precision="high")))
        assert torch.get_float32_matmul_precision() == "highest"
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_matmul_precision_value_is_checked_at_load():
    from llmfs.config import from_dict

    with pytest.raises(LlmfsError, match="matmul_precision.*'highest', 'high', 'medium'"):
        from_dict(RunConfig, {"matmul_precision": "low"})


def test_seeding_and_generators_reproduce():
    rt = setup(RunConfig(device="cpu", seed=3))
    a = torch.rand(3)
    b = torch.rand(3, generator=rt.generator(1))
    setup(RunConfig(device="cpu", seed=3))
    torch.testing.assert_close(torch.rand(3), a, rtol=0, atol=0)
    torch.testing.assert_close(torch.rand(3, generator=rt.generator(1)), b, rtol=0, atol=0)
    assert not torch.equal(torch.rand(3, generator=rt.generator(2)), b)


def test_dist_env_reads_torchrun_variables():
    assert dist_env({}) == DistEnv(0, 0, 1)
    assert dist_env({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"}) == DistEnv(3, 1, 4)
    assert not dist_env({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"}).is_main
    with pytest.raises(LlmfsError, match="RANK='x' is not an integer"):
        dist_env({"RANK": "x"})
    with pytest.raises(LlmfsError, match=r"RANK=4 is not in \[0, WORLD_SIZE=4\)"):
        dist_env({"RANK": "4", "WORLD_SIZE": "4"})


def test_two_processes_join_a_gloo_group(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent("""
        import torch, torch.distributed as dist
        from llmfs.runtime import RunConfig, setup, teardown
        rt = setup(RunConfig(device="cpu"))
        t = torch.tensor([float(rt.dist.rank + 1)])
        dist.all_reduce(t)
        print(f"rank {rt.dist.rank}/{rt.dist.world_size} sum {t.item():.0f}")
        teardown(rt)
    """))
    env = dict(os.environ, PYTHONPATH=os.getcwd(), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--standalone", str(script)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "rank 0/2 sum 3" in out.stdout and "rank 1/2 sum 3" in out.stdout
