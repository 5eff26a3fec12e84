"""save_pretrained / from_pretrained for the trained models (diffusers ConfigMixin style).

A model folder holds `config.json` (the dataclass config, strict keys on load: engine.config.from_dict) and
`model.safetensors` (the state dict). Writing goes to a temporary folder beside the target that is renamed into
place when complete, so a crash never leaves half a model and never damages one already there.

This module also holds the one atomic writer of files and folders every other saver uses (atomic_file_write,
atomic_dir_write): a folder is replaced only when it holds what that writer writes (never a stranger's files),
and what a killed writer left behind is cleaned on the next write.

Use: `class MotionDiT(Pretrained, nn.Module)` with a class attribute `config_class` and `self.config`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import uuid
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from engine.config import from_dict

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


def _fsync_dir(d: Path) -> None:
    try:                                   # makes the rename itself durable; not possible on every OS / filesystem
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# Temporary names beside a target carry the writer's pid, so a later run can tell a killed writer's leftovers
# (pid gone) from a write still in progress in another process (pid alive): `.NAME.tmp-PID-HEX` is a folder or
# file being written, `.NAME.old-PID-HEX` the previous folder moved aside during the swap.
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")


def _temp_name(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:                # someone else's live process
        return True
    return True


def clean_stale(target: str | Path) -> list[Path]:
    """Removes what a killed writer of `target` left beside it (temp files or folders whose pid is gone). If the
    kill fell between moving the old folder aside and moving the new one in, `target` is missing and the old
    folder is the last complete version: it is put back. Returns the paths removed or restored."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    done: list[Path] = []
    for p in sorted(target.parent.iterdir()):
        m = _TEMP.match(p.name)
        if m is None or m["name"] != target.name or _alive(int(m["pid"])):
            continue
        if m["kind"] == "old" and not target.exists() and not target.is_symlink():
            os.replace(p, target)
        elif p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        done.append(p)
    return done


def check_replaceable(target: str | Path, marker: str | tuple[str, ...]) -> Path:
    """Raises ValueError unless `target` may be (re)written by a writer whose output holds `marker` (a file or
    folder name, e.g. "avatar.json", or a tuple of names any one of which will do, for an output that may be
    found damaged): it must not exist, or be an empty folder, or a folder holding the marker (an earlier output
    of the same kind). We never delete what we did not write. Call it before long work."""
    target, names = Path(target), (marker,) if isinstance(marker, str) else tuple(marker)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ValueError(f"{target}: exists and is not a folder; nothing was written")
    if target.is_dir() and any(target.iterdir()) and not any((target / m).exists() for m in names):
        raise ValueError(f"{target}: a folder that holds no {' or '.join(names)} (not ours to replace); choose a "
                         f"new or empty folder; nothing was written")
    return target


def atomic_file_write(target: str | Path, write) -> Path:
    """write(binary file) into a hidden temp file beside `target`, fsync, then os.replace it onto `target`: a crash
    leaves either the old file or the new one, never half of one (and the next write removes the leftover)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    tmp = _temp_name(target, "tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return target


def atomic_dir_write(target: str | Path, write, marker: str | tuple[str, ...]) -> Path:
    """Calls write(tmp_dir) on a fresh folder beside `target`, then swaps it into place. `marker` names a file or
    folder every output of this writer holds (the first, when a tuple): an existing `target` is replaced only when
    it holds one (or is empty); anything else is a ValueError and `target` is left untouched (check_replaceable). Leftovers of a
    killed earlier write are cleaned first (clean_stale). The old folder is removed only after the swap."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    check_replaceable(target, marker)
    tmp = _temp_name(target, "tmp")
    tmp.mkdir()
    try:
        write(tmp)
        first = marker if isinstance(marker, str) else marker[0]
        if not (tmp / first).exists():
            raise RuntimeError(f"{target}: the writer left no {first} (a bug: every output holds it)")
        old = None
        if target.exists():
            old = _temp_name(target, "old")
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            if old is not None:
                os.replace(old, target)
            raise
        _fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


class Pretrained:
    """Mixin for torch.nn.Module subclasses with `config_class` (a dataclass) and `self.config`."""
    config_class: type

    def save_pretrained(self, path: str | Path) -> Path:
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        def write(tmp: Path) -> None:
            (tmp / CONFIG_FILE).write_text(json.dumps(
                {"class": type(self).__name__, **dataclasses.asdict(self.config)}, indent=1))
            save_file(state, str(tmp / WEIGHTS_FILE))
        return atomic_dir_write(path, write, marker=CONFIG_FILE)

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu"):
        path = Path(path)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (path / name).is_file():
                raise ValueError(f"{path}: not a saved {cls.__name__} (missing {name})")
        data = json.loads((path / CONFIG_FILE).read_text())
        saved_as = data.pop("class", cls.__name__)
        if saved_as != cls.__name__:
            raise ValueError(f"{path}: holds a {saved_as}, not a {cls.__name__}")
        model = cls(from_dict(cls.config_class, data, str(path / CONFIG_FILE)))
        model.load_state_dict(load_file(str(path / WEIGHTS_FILE), device=str(map_location)), strict=True)
        return model.eval()


_SHARED: dict[tuple, object] = {}


def shared_model(cls, folder: Path):
    """cls.from_pretrained(folder), loaded once per process and shared by every live session's motion source
    (engine/motion/learned.py, visemes.py: they only run it, without gradients). Less memory per session, and
    the DiT windows of many sessions can be sampled as one batch (engine.motion.dit.sample_windows groups them
    by model). A folder rewritten since (its files' mtimes) is loaded again."""
    files = sorted(folder.iterdir()) if folder.is_dir() else []
    key = (cls, str(folder.resolve()), tuple((f.name, f.stat().st_mtime_ns) for f in files))
    model = _SHARED.get(key)
    if model is None:
        model = _SHARED[key] = cls.from_pretrained(folder).eval()
    return model
