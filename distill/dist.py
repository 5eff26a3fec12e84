"""Distributed training: the same trainer command runs as one process or under `torchrun --nproc_per_node=N`.

What the trainer does with this file:
  1. `ctx = init_distributed()` first. Under torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT set)
     it joins the process group: NCCL with device cuda:LOCAL_RANK when CUDA is available, else gloo on the CPU.
     Without those variables (a plain `python -m ...` run) it returns world 1 and creates no process group.
  2. Build the model (same seed on every rank), `broadcast_module(model, ctx)` for anything built before wrapping
     that must match rank 0 exactly, then `model = wrap(model, ctx)`: DDP when world > 1 (gradients are averaged
     across ranks in backward), the model itself otherwise. `unwrap(model)` gives the module for state_dict().
  3. Data per rank from `distill.checkpoint.batch_indices(..., rank=ctx.rank, world=ctx.world)`.
  4. `all_reduce_mean(loss.detach(), ctx)` for logging the global mean; `is_main(ctx)` guards checkpoint writing
     and logging; `barrier(ctx)` where ranks must wait (e.g. before reading a checkpoint rank 0 just wrote).
  5. `shutdown(ctx)` at the end.
Every function works unchanged at world 1 (no process group): reductions return their input, barriers return.
"""
from __future__ import annotations

import dataclasses
import datetime
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclasses.dataclass(frozen=True)
class DistContext:
    """Where this process sits. backend is None when no process group exists (world 1)."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world > 1


def _env_int(name: str) -> int:
    raw = os.environ[name]
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}: expected an integer, got {raw!r}") from None


def init_distributed(backend: str | None = None, timeout_s: float = 1800.0) -> DistContext:
    """Read torchrun's environment and join the process group (world > 1), or return a world-1 context.

    backend: None picks "nccl" when CUDA is available, else "gloo"; "gloo" forces CPU training even with a GPU.
    """
    if backend not in (None, "nccl", "gloo"):
        raise ValueError(f"backend: expected None, 'nccl' or 'gloo', got {backend!r}")
    use_cuda = torch.cuda.is_available() and backend != "gloo"
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("backend: 'nccl' needs CUDA, and torch sees no CUDA device; use 'gloo' (or None) on the CPU")

    # 1. the environment: torchrun sets RANK, WORLD_SIZE and LOCAL_RANK (and MASTER_ADDR/PORT for the rendezvous);
    #    with none of the first three this is a plain single-process run (a stray MASTER_* is ignored).
    launched = [v for v in ENV_VARS[:3] if v in os.environ]
    if not launched:
        return DistContext(device=torch.device("cuda:0" if use_cuda else "cpu"))
    needed = ENV_VARS if "WORLD_SIZE" not in os.environ or _env_int("WORLD_SIZE") != 1 else ENV_VARS[:3]
    missing = [v for v in needed if v not in os.environ]
    if missing:
        raise RuntimeError(f"incomplete distributed environment: {', '.join(launched)} set but {', '.join(missing)} "
                           f"missing; launch with `torchrun --nproc_per_node=N ...`, or set none of {ENV_VARS[:3]}")
    rank, world, local_rank = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    if world < 1 or not 0 <= rank < world or local_rank < 0:
        raise ValueError(f"distributed environment: expected WORLD_SIZE >= 1, 0 <= RANK < WORLD_SIZE, LOCAL_RANK >= 0; "
                         f"got RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local_rank}")

    # 2. the device: one GPU per local rank.
    if use_cuda:
        n = torch.cuda.device_count()
        if local_rank >= n:
            raise RuntimeError(f"LOCAL_RANK={local_rank} but only {n} CUDA device(s) are visible: use "
                               f"--nproc_per_node <= {n} (or backend='gloo' for CPU training)")
        torch.cuda.set_device(local_rank)
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if world == 1:
        return DistContext(rank=0, world=1, local_rank=local_rank, device=device)

    # 3. the process group (reused when the caller already made one).
    chosen = "nccl" if use_cuda else "gloo"
    if dist.is_initialized():
        if dist.get_rank() != rank or dist.get_world_size() != world:
            raise RuntimeError(f"a process group already exists with rank {dist.get_rank()} / world "
                               f"{dist.get_world_size()}, but the environment says {rank} / {world}")
        chosen = dist.get_backend()
    else:
        dist.init_process_group(chosen, init_method="env://", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s))
    return DistContext(rank=rank, world=world, local_rank=local_rank, device=device, backend=chosen)


def _need_group(ctx: DistContext, what: str) -> None:
    if ctx.world > 1 and not dist.is_initialized():
        raise RuntimeError(f"{what}: context says world {ctx.world} but no process group exists; "
                           f"create the context with init_distributed() (and do not call shutdown() before)")


def wrap(model: nn.Module, ctx: DistContext, find_unused_parameters: bool = False) -> nn.Module:
    """Move `model` to ctx.device; wrap it in DistributedDataParallel when world > 1 (DDP broadcasts rank 0's
    parameters and buffers at construction and averages gradients in backward). world 1: the model itself.
    find_unused_parameters: set it when some parameters get no gradient in a step (e.g. a branch not taken)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, DDP):
        raise ValueError("model: already wrapped in DistributedDataParallel")
    model = model.to(ctx.device)
    if ctx.world == 1:
        return model
    _need_group(ctx, "wrap")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model: DDP needs at least one parameter with requires_grad=True")
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DDP(model, device_ids=ids, output_device=ids[0] if ids else None,
               find_unused_parameters=find_unused_parameters)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (for state_dict / save_pretrained), or `model` itself."""
    return model.module if isinstance(model, DDP) else model


def is_main(ctx: DistContext) -> bool:
    return ctx.rank == 0


def barrier(ctx: DistContext) -> None:
    if ctx.world == 1:
        return
    _need_group(ctx, "barrier")
    if ctx.backend == "nccl":
        dist.barrier(device_ids=[ctx.local_rank])
    else:
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The mean of `tensor` over ranks, as a new tensor (the input is not modified); integer tensors are averaged
    as float32. world 1: a detached copy."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"tensor: expected a torch.Tensor, got {type(tensor).__name__}")
    out = tensor.detach().clone()
    if not out.is_floating_point():
        out = out.float()
    if ctx.world == 1:
        return out
    _need_group(ctx, "all_reduce_mean")
    if ctx.backend == "nccl" and out.device.type != "cuda":
        moved = out.to(ctx.device)
        dist.all_reduce(moved, op=dist.ReduceOp.SUM)
        return (moved / ctx.world).to(tensor.device)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / ctx.world


@torch.no_grad()
def broadcast_module(model: nn.Module, ctx: DistContext) -> nn.Module:
    """Copy rank 0's parameters and buffers into every rank's `model` (in place), for modules built before
    wrapping (or never wrapped, e.g. a frozen teacher with random parts) that must match across ranks."""
    if ctx.world == 1:
        return model
    _need_group(ctx, "broadcast_module")
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if ctx.backend == "nccl" and t.device.type != "cuda":
            raise ValueError(f"broadcast_module: {name} is on {t.device}; NCCL needs the module on {ctx.device} "
                             f"(call model.to(ctx.device) first)")
        dist.broadcast(t.data, src=0)
    return model


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (no-op at world 1 or when none exists). The ranks meet first: a gloo rank that tore
    its group down while the other still used it aborted ("terminate called without an active exception"), once
    in a fresh-clone test run under load."""
    if ctx.world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
