"""Activated 3D Gaussians in memory, and their conversion to and from the standard 3DGS .ply (engine.render.ply),
which stores log-scales and opacity logits. Rendering takes these (engine.render.splat -> cuda_ext)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from cuda_ext.reference import SH_C0
from engine.render.ply import GaussianPly


def rgb_to_sh_dc(rgb: Tensor) -> Tensor:
    """Colours [..., 3] in [0, 1] -> the degree-0 SH coefficient that renders them (colour = 0.5 + C0 * dc)."""
    return (rgb - 0.5) / SH_C0


def sh_dc_to_rgb(dc: Tensor) -> Tensor:
    """Degree-0 SH coefficients [..., 3] -> the colours they render."""
    return 0.5 + SH_C0 * dc


def luma(rgb: Tensor) -> Tensor:
    """Colours [..., 3] -> their luma [...] with the ITU-R BT.601 weights (0.299, 0.587, 0.114)."""
    return rgb @ rgb.new_tensor([0.299, 0.587, 0.114])


@dataclass
class Gaussians:
    """means [N, 3], quats [N, 4] wxyz, scales [N, 3] > 0, opacities [N] in [0, 1], sh [N, K, 3] with
    K = (degree + 1)^2 (sh[:, 0] is the DC term, see rgb_to_sh_dc)."""
    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    sh: Tensor

    def __len__(self) -> int:
        return self.means.shape[0]

    def select(self, index: Tensor) -> "Gaussians":
        """The Gaussians picked by index: a bool mask [N] or indices [M] (in that order)."""
        return Gaussians(self.means[index], self.quats[index], self.scales[index], self.opacities[index],
                         self.sh[index])

    @staticmethod
    def cat(parts: list["Gaussians"]) -> "Gaussians":
        """One set [sum N] from several (same SH degree), in order."""
        return Gaussians(*(torch.cat([getattr(p, f) for p in parts]) for f in
                           ("means", "quats", "scales", "opacities", "sh")))

    @property
    def sh_degree(self) -> int:
        return int(math.isqrt(self.sh.shape[1])) - 1

    @classmethod
    def from_ply(cls, ply: GaussianPly) -> "Gaussians":
        return cls(ply.means, ply.quats, ply.scales(), ply.opacities(), ply.sh)

    def to_ply(self) -> GaussianPly:
        return GaussianPly.from_activated(self.means, self.quats, self.scales, self.opacities, self.sh)
