"""The frozen-or-trained modules of an SD-1.x video teacher, held together: `VideoComponents`, the base of each
teacher's `Components` dataclass (its config and its SD VAE; the teacher adds its denoiser, audio features, ...).
    modules()      {field name: module} for every nn.Module field, in field order
    scheduler()    a fresh diffusers DDIMScheduler from cfg.scheduler_kwargs()
    place()        every module to cfg.device, and to cfg.dtype unless that is float32
`load_strict` loads a state dict that must fit a module exactly (a ValueError names the keys that do not).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, DDIMScheduler
from torch import Tensor, nn

from .config import SDVideoConfig

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class VideoComponents:
    cfg: SDVideoConfig     # the teacher's config (a subclass)
    vae: AutoencoderKL

    def modules(self) -> dict[str, nn.Module]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), nn.Module)}

    def scheduler(self) -> DDIMScheduler:
        return DDIMScheduler(**self.cfg.scheduler_kwargs())

    def place(self) -> None:
        for m in self.modules().values():
            m.to(self.cfg.device)
            if DTYPES[self.cfg.dtype] != torch.float32:
                m.to(DTYPES[self.cfg.dtype])


def load_strict(module: nn.Module, state: dict[str, Tensor], what: str) -> None:
    """Load `state` into `module`; ValueError naming the missing and unexpected keys (what: the file, for the
    message) unless they fit exactly."""
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{what}: keys do not match: missing {result.missing_keys[:8]} "
                         f"({len(result.missing_keys)}), unexpected {result.unexpected_keys[:8]} "
                         f"({len(result.unexpected_keys)})")
