"""Worker for tests/test_ddp.py, launched as
    python -m torch.distributed.run --nproc_per_node=2 --master_port=P tests/ddp_worker.py OUTDIR
Every rank builds the toy model from its own seed (so broadcast_module has something to do), wraps it in DDP
through distill.dist, trains STEPS SGD steps on its own slice of each global batch (batch_indices), and writes
OUTDIR/rank{r}.pt with its final parameters and the globally averaged losses. `reference()` is the same training
in one process on the full global batch: with real gradient averaging both give the same parameters.
"""
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from distill.checkpoint import batch_indices
from distill.dist import (all_reduce_mean, barrier, broadcast_module, init_distributed, is_main, shutdown, unwrap,
                          wrap)

N, BATCH, STEPS, SEED, LR = 32, 4, 5, 3, 0.1


def make_data():
    g = torch.Generator().manual_seed(11)
    return torch.randn(N, 6, generator=g), torch.randn(N, 2, generator=g)


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))


def train_step(model, opt, x, y, idx) -> torch.Tensor:
    loss = F.mse_loss(model(x[idx]), y[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.detach()


def reference(world: int) -> tuple[dict[str, torch.Tensor], list[float]]:
    """One process, global batch BATCH * world, rank 0's initial parameters."""
    model = make_model(seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    x, y = make_data()
    losses = [train_step(model, opt, x, y, batch_indices(N, BATCH * world, s, SEED)).item() for s in range(STEPS)]
    return model.state_dict(), losses


def main(outdir: Path) -> None:
    torch.set_num_threads(1)
    ctx = init_distributed()
    assert ctx.world == 2 and ctx.backend == "gloo" and ctx.device.type == "cpu", ctx

    model = make_model(seed=ctx.rank)                       # deliberately different on each rank ...
    broadcast_module(model, ctx)                            # ... until rank 0's parameters become everyone's
    synced = all(torch.equal(all_reduce_mean(p, ctx), p.detach()) for p in model.parameters())
    ddp = wrap(model, ctx)
    opt = torch.optim.SGD(ddp.parameters(), lr=LR, momentum=0.9)
    x, y = make_data()
    losses, seen = [], []
    for step in range(STEPS):
        idx = batch_indices(N, BATCH, step, SEED, ctx.rank, ctx.world)
        seen.append(idx)
        losses.append(all_reduce_mean(train_step(ddp, opt, x, y, idx), ctx).item())
    barrier(ctx)
    torch.save({"rank": ctx.rank, "world": ctx.world, "main": is_main(ctx), "synced_after_broadcast": synced,
                "params": {k: v.detach().clone() for k, v in unwrap(ddp).state_dict().items()},
                "losses": losses, "indices": seen}, outdir / f"rank{ctx.rank}.pt")
    shutdown(ctx)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
