"""save_pretrained / from_pretrained for the trained models (diffusers ConfigMixin style).

A model folder holds `config.json` (the dataclass config, strict keys on load: engine.config.from_dict) and
`model.safetensors` (the state dict). Writing goes to a temporary folder beside the target that is renamed into
place when complete, so a crash never leaves half a model and never damages one already there.

Use: `class MotionDiT(Pretrained, nn.Module)` with a class attribute `config_class` and `self.config`.
"""
from __future__ import annotations

import dataclasses
import json
import os
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


def atomic_file_write(target: str | Path, write) -> Path:
    """write(binary file) into a hidden temp file beside `target`, fsync, then os.replace it onto `target`: a crash
    leaves either the old file or the new one, never half of one."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
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


def atomic_dir_write(target: str | Path, write) -> Path:
    """Call write(tmp_dir) on a fresh folder beside `target`, then move it into place (replacing `target`)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write(tmp)
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old)
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
        return atomic_dir_write(path, write)

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
