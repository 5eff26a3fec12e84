"""Training checkpoints written atomically, exact resume, and the data order as a pure function of the step.

What the trainer does with this file:
  1. `got = load_latest(run_dir)` when `--resume` is given: `None` (nothing usable) or `(step, state)`, with the
     python / numpy / torch (CPU and CUDA) RNG states already restored to what they were when `step` was saved.
     The trainer loads `state["model"]`, `state["optimizer"]`, ... into the objects it just built and continues
     at global step `step` (steps count from 0: a checkpoint "at step s" was written after s optimizer steps).
  2. Each step takes its samples from `batch_indices(n, batch, step, seed, rank, world)`. That is a pure function
     of its arguments, so a resumed run (or a run on another number of ranks with the same global batch) sees
     exactly the samples the uninterrupted run would have seen. No sampler state needs saving.
  3. Every N steps rank 0 calls `save_checkpoint(run_dir, step, {"model": m.state_dict(), "optimizer":
     opt.state_dict(), "config": {...}, ...})`.

Layout of `run_dir/checkpoints/`:
    step_00000010.pt   torch.save of {"format": 1, "step": 10, "state": <the caller's dict>, "rng": <RNG states>}
    latest             one line, the file name of the newest complete checkpoint ("step_00000010.pt")
Writes go to a hidden temp file in the same folder, are fsync'ed, then `os.replace`d into place, and only then is
`latest` replaced (the same way). A crash at any moment therefore leaves `latest` naming a complete file. Saving
step s deletes checkpoints of steps > s (a future abandoned by resuming from an older one) and keeps the newest
`keep` files.

The state must hold tensors, state_dicts and plain python values (dict/list/tuple/str/int/float/bool/None):
files are read with `torch.load(weights_only=True)`, which refuses arbitrary pickled objects.

Under DDP only rank 0 saves. Every rank loads the same file, so every rank restores rank 0's RNG states: all
ranks continue with the same RNG streams (the usual setup, where every rank seeds the same); data differs by
rank through `batch_indices`, not through the RNG.
"""
from __future__ import annotations

import functools
import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.pretrained import atomic_file_write

FORMAT = 1
CKPT_DIR, LATEST = "checkpoints", "latest"
_NAME = re.compile(r"^step_(\d{8,})\.pt$")


def _ckpt_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CKPT_DIR


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """The checkpoint files under run_dir/checkpoints as (step, path), oldest first (temp files excluded)."""
    d = _ckpt_dir(run_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name)) and p.is_file()]
    return sorted(found)


# ---------------------------------------------------------------------------------------------------------- RNG
def rng_state() -> dict[str, Any]:
    """The RNG states of python `random`, numpy's global generator, torch CPU and (when available) every CUDA device,
    as tensors and plain python values (loadable with weights_only=True)."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state()` returned. CUDA states are restored when CUDA is available here; a checkpoint from
    a machine with another number of GPUs restores the devices both have, with a warning."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state((npst["name"], npst["keys"].cpu().numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())          # RNG states live on the CPU whatever map_location was
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        n = torch.cuda.device_count()
        if len(cuda) != n:
            warnings.warn(f"checkpoint holds CUDA RNG states of {len(cuda)} devices, this machine has {n}: "
                          f"restoring the first {min(n, len(cuda))}", stacklevel=3)
        for i, s in enumerate(cuda[:n]):
            torch.cuda.set_rng_state(s.cpu(), i)




def save_checkpoint(run_dir: str | Path, step: int, state: dict[str, Any], keep: int = 3) -> Path:
    """Write `state` (+ the RNG states) as run_dir/checkpoints/step_{step:08d}.pt atomically, point `latest` at it,
    delete checkpoints of later steps, and keep the newest `keep` files. Returns the checkpoint's path.

    state: names -> state_dict()s of modules / optimizers / schedulers and plain python values. Call on rank 0 only.
    """
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step: expected an int >= 0, got {step!r}")
    if not isinstance(state, dict):
        raise ValueError(f"state: expected a dict of names -> state_dicts / python values, got {type(state).__name__}")
    if not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep: expected an int >= 1 (how many checkpoints to keep), got {keep!r}")
    d = _ckpt_dir(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    for stale in d.glob(".step_*.tmp-*"):   # left by a process killed mid-write (rank 0 is the only writer)
        stale.unlink(missing_ok=True)

    # 1. the checkpoint file, then 2. the pointer to it: `latest` never names an incomplete file.
    path = d / checkpoint_name(step)
    payload = {"format": FORMAT, "step": step, "state": state, "rng": rng_state()}
    atomic_file_write(path, lambda f: torch.save(payload, f))
    atomic_file_write(d / LATEST, lambda f: f.write(f"{path.name}\n".encode()))

    # 3. prune: later steps belong to a future abandoned by resuming from an older checkpoint; then keep the newest.
    ckpts = list_checkpoints(run_dir)
    for s, p in ckpts:
        if s > step:
            p.unlink(missing_ok=True)
    ckpts = [(s, p) for s, p in ckpts if s <= step]
    for _, p in ckpts[:-keep]:
        p.unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------------------------------------------- loading
def _read(path: Path, map_location) -> tuple[int, dict[str, Any], dict[str, Any]]:
    data = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT or not {"step", "state", "rng"} <= data.keys():
        raise ValueError("not a checkpoint written by distill.checkpoint.save_checkpoint (format 1)")
    m = _NAME.match(path.name)
    if m and int(m.group(1)) != data["step"]:
        raise ValueError(f"file name says step {int(m.group(1))}, contents say step {data['step']}")
    return data["step"], data["state"], data["rng"]


def load_latest(run_dir: str | Path, map_location: str | torch.device = "cpu",
                restore_rng: bool = True) -> tuple[int, dict[str, Any]] | None:
    """The newest usable checkpoint as (step, state), or None when there is none; restores the RNG states.

    Tries the file `latest` names first, then the other checkpoint files newest first. A missing or corrupt
    `latest`, or a truncated / unreadable checkpoint, is skipped with a warning: resuming never crashes on one.
    """
    d = _ckpt_dir(run_dir)
    candidates: list[Path] = []
    latest = d / LATEST
    if latest.is_file():
        try:
            name = latest.read_text().strip()
        except (OSError, UnicodeDecodeError) as e:
            name = ""
            warnings.warn(f"{latest}: unreadable ({e}); looking for the newest complete checkpoint", stacklevel=2)
        if _NAME.match(name) and (d / name).is_file():
            candidates.append(d / name)
        elif name:
            warnings.warn(f"{latest}: names {name[:80]!r}, which is not a checkpoint file here; "
                          f"looking for the newest complete checkpoint", stacklevel=2)
    candidates += [p for _, p in reversed(list_checkpoints(run_dir)) if p not in candidates]

    for path in candidates:
        try:
            step, state, rng = _read(path, map_location)
        except Exception as e:  # noqa: BLE001 - a damaged file of any kind is skipped, never fatal
            warnings.warn(f"{path}: skipped, cannot be loaded ({type(e).__name__}: {str(e)[:200]})", stacklevel=2)
            continue
        if restore_rng:
            set_rng_state(rng)
        return step, state
    return None


# ------------------------------------------------------------------------------------------------- data order
def _mix(seed: int, epoch: int) -> int:
    """splitmix64 of (seed, epoch): nearby seeds / epochs give unrelated generator seeds."""
    mask = (1 << 64) - 1
    z = (seed * 0x9E3779B97F4A7C15 + epoch + 0x632BE59BD9B4E019) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return (z ^ (z >> 31)) & ((1 << 63) - 1)


@functools.lru_cache(maxsize=8)
def _order(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    g = torch.Generator().manual_seed(_mix(seed, epoch))
    return tuple(torch.randperm(n, generator=g).tolist())


def _check_int(name: str, v, lo: int) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """A permutation of range(n): the sample order of `epoch`, a pure function of (n, seed, epoch). Uses its own
    torch.Generator, never the global RNG."""
    _check_int("n", n, 1)
    _check_int("seed", seed, 0)
    _check_int("epoch", epoch, 0)
    return list(_order(n, seed, epoch))


def batch_indices(n: int, batch: int, step: int, seed: int, rank: int = 0, world: int = 1) -> list[int]:
    """Sample indices (into a dataset of n) of global step `step` (from 0) for `rank` of `world`.

    The samples form one stream, epoch_order(n, seed, 0) + epoch_order(n, seed, 1) + ...; global step s takes the
    global batch stream[s*G : (s+1)*G], G = batch * world, and rank r its slice [r*batch : (r+1)*batch]. A batch
    may straddle two epochs; within the stream every index appears exactly once per epoch. The same global batch
    on any number of ranks gives the same samples per step: batch_indices(n, b*w, s, seed) is the concatenation
    of batch_indices(n, b, s, seed, r, w) over r.
    """
    _check_int("n", n, 1)
    _check_int("batch", batch, 1)
    _check_int("step", step, 0)
    _check_int("seed", seed, 0)
    _check_int("world", world, 1)
    if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank < world:
        raise ValueError(f"rank: expected an int in [0, {world - 1}] (world={world}), got {rank!r}")
    start = (step * world + rank) * batch
    out: list[int] = []
    for pos in range(start, start + batch):
        out.append(_order(n, seed, pos // n)[pos % n])
    return out
