"""distill.dist: two gloo processes on the CPU stay identical and equal a one-process run on the full global batch
(so gradients really are averaged); and the world-1 path needs no process group."""
import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from distill.dist import (DistContext, all_reduce_mean, barrier, broadcast_module, init_distributed, is_main,
                          shutdown, unwrap, wrap)

pytestmark = pytest.mark.usefixtures("one_thread")

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
WORKER = TESTS / "ddp_worker.py"
DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT",
            "TORCHELASTIC_RUN_ID")


def _load_worker():
    spec = importlib.util.spec_from_file_location("ddp_worker", WORKER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_stay_identical_and_average_gradients(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(WORKER), str(tmp_path)]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"torchrun failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"

    ranks = [torch.load(tmp_path / f"rank{i}.pt") for i in range(2)]
    assert [d["rank"] for d in ranks] == [0, 1] and [d["main"] for d in ranks] == [True, False]
    assert all(d["world"] == 2 and d["synced_after_broadcast"] for d in ranks)
    assert all(set(a).isdisjoint(b) for a, b in zip(ranks[0]["indices"], ranks[1]["indices"]))   # own data per rank

    p0, p1 = ranks[0]["params"], ranks[1]["params"]
    for k in p0:
        assert torch.equal(p0[k], p1[k]), f"{k}: ranks differ by {(p0[k] - p1[k]).abs().max().item():.3g}"

    ref_params, ref_losses = _load_worker().reference(world=2)
    for k, v in ref_params.items():
        diff = (p0[k] - v).abs().max().item()
        assert torch.allclose(p0[k], v, rtol=0, atol=1e-6), f"{k}: DDP vs one process on the global batch: {diff:.3g}"
    assert ranks[0]["losses"] == ranks[1]["losses"]
    assert torch.allclose(torch.tensor(ranks[0]["losses"]), torch.tensor(ref_losses), rtol=0, atol=1e-6)
    # and the parameters did move: a reference that sums (or ignores the other rank) would not match
    init = _load_worker().make_model(0).state_dict()
    assert not all(torch.allclose(init[k], p0[k]) for k in init)


def test_world_one_without_environment(monkeypatch):
    for v in DIST_ENV:
        monkeypatch.delenv(v, raising=False)
    ctx = init_distributed()
    assert (ctx.rank, ctx.world, ctx.local_rank, ctx.backend) == (0, 1, 0, None) and not ctx.distributed
    assert ctx.device == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    assert not torch.distributed.is_initialized()
    cpu = DistContext()
    model = nn.Linear(2, 2)
    assert wrap(model, cpu) is model and unwrap(model) is model and broadcast_module(model, cpu) is model
    t = torch.tensor([1.0, 2.0], requires_grad=True)
    m = all_reduce_mean(t, cpu)
    assert torch.equal(m, t.detach()) and m is not t and not m.requires_grad
    assert all_reduce_mean(torch.tensor([3]), cpu).dtype == torch.float32
    assert is_main(cpu)
    barrier(cpu)
    shutdown(cpu)


def test_clear_errors(monkeypatch):
    for v in DIST_ENV:
        monkeypatch.delenv(v, raising=False)
    with pytest.raises(ValueError, match="backend"):
        init_distributed(backend="mpi")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="LOCAL_RANK, MASTER_ADDR, MASTER_PORT missing"):
        init_distributed()
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2, WORLD_SIZE=2"):
        init_distributed()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE: expected an integer"):
        init_distributed()
    two = DistContext(rank=0, world=2)                      # a context claiming world 2 with no process group
    with pytest.raises(RuntimeError, match="no process group"):
        wrap(nn.Linear(2, 2), two)
    with pytest.raises(RuntimeError, match="no process group"):
        all_reduce_mean(torch.ones(1), two)
    with pytest.raises(ValueError, match="torch.Tensor"):
        all_reduce_mean(1.0, two)
