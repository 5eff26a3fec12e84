"""Saving and loading PAHA weights: a folder with config.json ({"config": the PAHAConfig keys}) and
model.safetensors (every module's state, keys prefixed by the component name: vae., model., pce., audio.).

No PAHA weights are released, so this layout is this package's own (written by `save_pretrained`). Loading is
strict: a missing file, an architecture key that differs from the requested config, or a missing / unexpected /
mis-shaped tensor is a ValueError that names it.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


def save_pretrained(modules: dict[str, nn.Module], cfg, folder: str | Path) -> Path:
    """Write config.json + model.safetensors for modules {name: module} into folder (created if needed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    saved = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()
             if k not in ("weights_dir", "random_init")}
    (folder / CONFIG_NAME).write_text(json.dumps({"config": saved}, indent=1, sort_keys=True))
    state = {f"{name}.{k}": v.detach().cpu().contiguous() for name, m in modules.items()
             for k, v in m.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME))
    return folder


def check_weights_dir(weights_dir: str | Path) -> dict[str, Path]:
    root = Path(weights_dir)
    if not root.is_dir():
        raise ValueError(f"weights_dir: {str(root)!r} is not a directory")
    files = {"config": root / CONFIG_NAME, "weights": root / WEIGHTS_NAME}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise ValueError(f"weights_dir: missing file(s) {missing} (expected a folder written by save_pretrained)")
    return files


def read_config(weights_dir: str | Path) -> dict:
    """The PAHAConfig keys saved in weights_dir/config.json (all but weights_dir and random_init)."""
    files = check_weights_dir(weights_dir)
    saved = json.loads(files["config"].read_text()).get("config")
    if not isinstance(saved, dict):
        raise ValueError(f"weights_dir: {files['config']} has no 'config' mapping")
    return saved


def check_architecture(files: dict[str, Path], cfg) -> None:
    want = cfg.architecture()
    saved = {k: v for k, v in read_config(files["config"].parent).items() if k in want}
    diff = sorted(k for k in set(saved) | set(want) if saved.get(k) != want.get(k))
    if diff:
        raise ValueError(f"weights_dir: {files['config']} differs from the requested config at {diff}: saved "
                         f"{[saved.get(k) for k in diff]}, requested {[want.get(k) for k in diff]}")


def load_into(modules: dict[str, nn.Module], files: dict[str, Path]) -> None:
    state = load_file(str(files["weights"]))
    for name, module in modules.items():
        prefix = name + "."
        own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        want = module.state_dict()
        missing, unexpected = sorted(set(want) - set(own)), sorted(set(own) - set(want))
        shapes = sorted(k for k in set(want) & set(own) if want[k].shape != own[k].shape)
        if missing or unexpected or shapes:
            raise ValueError(f"weights_dir: {files['weights']} does not fit {name}: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}, shape mismatch {shapes[:5]}")
        module.load_state_dict(own, strict=True)
    extra = sorted({k.split(".", 1)[0] for k in state} - set(modules))
    if extra:
        raise ValueError(f"weights_dir: {files['weights']} has tensors of unknown components {extra}")


def load_pretrained(modules: dict[str, nn.Module], cfg) -> None:
    """Load cfg.weights_dir into modules (strict, see the module docstring)."""
    files = check_weights_dir(cfg.weights_dir)
    check_architecture(files, cfg)
    with torch.no_grad():
        load_into(modules, files)
