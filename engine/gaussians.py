"""Activated 3D Gaussians in memory, and their conversion to and from the standard 3DGS .ply (engine.ply),
which stores log-scales and opacity logits. Rendering takes these (engine.render -> cuda_ext)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from engine.ply import GaussianPly


@dataclass
class Gaussians:
    """means [N, 3], quats [N, 4] wxyz, scales [N, 3] > 0, opacities [N] in [0, 1], sh [N, K, 3] with
    K = (degree + 1)^2 (sh[:, 0] is the DC term: colour = 0.5 + 0.2820948 * sh[:, 0])."""
    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    sh: Tensor

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return int(math.isqrt(self.sh.shape[1])) - 1

    @classmethod
    def from_ply(cls, ply: GaussianPly) -> "Gaussians":
        return cls(ply.means, ply.quats, ply.scales(), ply.opacities(), ply.sh)

    def to_ply(self) -> GaussianPly:
        return GaussianPly.from_activated(self.means, self.quats, self.scales, self.opacities, self.sh)
