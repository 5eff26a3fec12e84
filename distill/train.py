"""One training loop for every distillation stage (fit4d's decoder, embedding, motion, finetune).

A stage is an objective module whose forward(batch) returns the loss dict {"loss": scalar, ...diagnostics},
its optimizers, a step count and `batch_fn(step, rank, world)`: this rank's batch of global step `step`, a pure
function of its arguments (distill.checkpoint.batch_indices + a generator seeded from the step). Randomness
inside the objective (diffusion steps, noise, dropout of the audio) comes from `batch["generator"]`. So a
resumed run replays exactly the batches and noise of the uninterrupted one, and `--resume` continues exactly.

    run_stage:  resume from the stage's newest checkpoint (run_dir/stages/<name>/checkpoints, atomic files)
                -> for each step: batch -> objective (DDP-wrapped under torchrun) -> backward -> clip -> step
                -> every log_every steps a row of run_dir/logs/<name>.csv, every checkpoint_every steps a
                   checkpoint, every sample_every steps sample_fn (a sample mp4)
                -> run_dir/stages/<name>/done when finished (a later --resume skips the stage)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from distill.checkpoint import load_latest, save_checkpoint
from distill.dist import DistContext, barrier, is_main, unwrap, wrap
from distill.logs import RunLog, plot_losses


@dataclass
class Stage:
    name: str
    objective: nn.Module                                  # forward(batch) -> {"loss": scalar tensor, ...}
    optimizers: dict[str, torch.optim.Optimizer]
    steps: int
    batch_fn: Callable[[int, int, int], dict]             # (step, rank, world) -> batch
    sample_fn: Callable[[int], None] | None = None        # (step) -> writes a sample (rank 0 only)
    grad_clip: float = 1.0
    find_unused_parameters: bool = False


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The generator of one (seed, step, rank): all randomness of a step comes from it."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7919 + rank * 104_729) % (2 ** 63))


def stage_dir(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / "stages" / name


def is_done(run_dir: Path, name: str) -> bool:
    return (stage_dir(run_dir, name) / "done").is_file()


def mark_done(run_dir: Path, name: str, ctx: DistContext) -> None:
    if is_main(ctx):
        d = stage_dir(run_dir, name)
        d.mkdir(parents=True, exist_ok=True)
        (d / "done").write_text("done\n")
    barrier(ctx)


def run_stage(stage: Stage, run_dir: Path, ctx: DistContext, *, checkpoint_every: int, log_every: int,
              sample_every: int = 0, resume: bool = False, progress: bool = True) -> dict[str, float]:
    """Train `stage` to its last step (see the module docstring). Returns the last logged metrics."""
    run_dir = Path(run_dir)
    ckpt_dir = stage_dir(run_dir, stage.name)
    start = 0
    if resume:
        got = load_latest(ckpt_dir)
        if got is not None:
            start, state = got
            stage.objective.load_state_dict(state["objective"])
            for key, opt in stage.optimizers.items():
                opt.load_state_dict(state["optimizers"][key])
    model = wrap(stage.objective, ctx, find_unused_parameters=stage.find_unused_parameters)
    log = RunLog(run_dir, stage.name, resume_step=start if resume else None, rank=ctx.rank)
    params = [p for opt in stage.optimizers.values() for group in opt.param_groups for p in group["params"]]
    last: dict[str, float] = {}
    bar = tqdm(range(start, stage.steps), initial=start, total=stage.steps, desc=f"distill {stage.name}",
               unit="step", disable=not (progress and is_main(ctx)), dynamic_ncols=True)
    model.train()
    for step in bar:
        batch = stage.batch_fn(step, ctx.rank, ctx.world)
        out = model(batch)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"stage {stage.name}: loss is {float(loss)} at step {step}; "
                                     f"parts: { {k: float(v) for k, v in out.items()} }")
        for opt in stage.optimizers.values():
            opt.zero_grad(set_to_none=True)
        loss.backward()
        if stage.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, stage.grad_clip)
        for opt in stage.optimizers.values():
            opt.step()
        done = step + 1
        if done % log_every == 0 or done == stage.steps:
            last = {k: float(v.detach()) for k, v in out.items()}
            log.log(done, last)
            bar.set_postfix(loss=f"{last['loss']:.4g}")
        if done % checkpoint_every == 0 or done == stage.steps:
            if is_main(ctx):
                save_checkpoint(ckpt_dir, done, {
                    "objective": unwrap(model).state_dict(),
                    "optimizers": {k: opt.state_dict() for k, opt in stage.optimizers.items()}})
            barrier(ctx)
        if stage.sample_fn is not None and sample_every and done % sample_every == 0 and is_main(ctx):
            stage.sample_fn(done)
    bar.close()
    log.close()
    if ctx.world > 1:
        check_ranks_agree(unwrap(model), ctx, ckpt_dir)
    if is_main(ctx) and log.path.is_file():
        plot_losses(log.path, log.path.with_suffix(".png"))
    mark_done(run_dir, stage.name, ctx)
    return last


@torch.no_grad()
def check_ranks_agree(model: nn.Module, ctx: DistContext, out_dir: Path) -> float:
    """Under DDP every rank must end a stage with the same parameters: the largest |difference| to rank 0's,
    over all ranks and parameters, is written to out_dir/ddp_check.json and must be exactly 0."""
    import json

    import torch.distributed as dist
    flat = torch.cat([p.detach().reshape(-1).float().cpu() for p in model.parameters()])
    mine = flat.to(ctx.device)
    ref = mine.clone()
    dist.broadcast(ref, src=0)
    diff = (mine - ref).abs().max().reshape(1)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    value = float(diff)
    if is_main(ctx):
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "ddp_check.json").write_text(json.dumps({"world": ctx.world, "max_abs_diff": value}))
    if value != 0.0:
        raise RuntimeError(f"DDP: ranks disagree after the stage (max |param - rank 0's| = {value})")
    return value
