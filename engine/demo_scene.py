"""A procedural, avatar-like Gaussian scene for the demo, the benchmarks and the tests: a dense cloud of
small splats on a head-and-torso shape (ellipsoid surfaces), plus a few large soft splats behind, coloured
by position. Not uniform noise: the depth complexity and size mix resemble a real avatar's."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Scene:
    """Activated Gaussians: means [N, 3], quats [N, 4] wxyz, scales [N, 3] > 0, opacities [N], colors [N, 3]
    (and sh [N, 16, 3], degree-3 SH whose DC term reproduces `colors`)."""
    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    colors: Tensor
    sh: Tensor

    def __len__(self) -> int:
        return self.means.shape[0]


def _on_ellipsoid(g: torch.Generator, n: int, center, radii) -> Tensor:
    d = torch.randn(n, 3, generator=g)
    d = d / d.norm(dim=-1, keepdim=True)
    return torch.tensor(center) + d * torch.tensor(radii) * (1 + 0.03 * torch.randn(n, 1, generator=g))


def avatar_like_scene(n: int, seed: int = 0) -> Scene:
    """n Gaussians: 55% head, 40% torso (small, opaque-ish), 5% large soft background/hair splats."""
    if n < 20:
        raise ValueError(f"n: need at least 20 Gaussians, got {n}")
    g = torch.Generator().manual_seed(seed)
    n_big = max(1, n // 20)
    n_head = int(0.55 * n)
    n_body = n - n_head - n_big
    head = _on_ellipsoid(g, n_head, (0.0, -0.55, 0.0), (0.17, 0.22, 0.19))
    body = _on_ellipsoid(g, n_body, (0.0, 0.25, 0.05), (0.38, 0.45, 0.2))
    big = _on_ellipsoid(g, n_big, (0.0, -0.1, 0.25), (0.45, 0.7, 0.15))
    means = torch.cat([head, body, big])
    # Small splats scale with the surface density so the shape stays closed at any n.
    small = 0.6 * math.sqrt(1.2 / n)
    scales = torch.cat([
        small * torch.exp(0.35 * torch.randn(n_head + n_body, 3, generator=g)),
        0.06 * torch.exp(0.3 * torch.randn(n_big, 3, generator=g)),
    ])
    quats = torch.randn(n, 4, generator=g)
    quats = quats / quats.norm(dim=-1, keepdim=True)
    opacities = torch.cat([0.55 + 0.45 * torch.rand(n_head + n_body, generator=g),
                           0.15 + 0.3 * torch.rand(n_big, generator=g)])
    base = torch.tensor([[0.93, 0.76, 0.65]] * n_head + [[0.2, 0.35, 0.65]] * n_body + [[0.3, 0.2, 0.15]] * n_big)
    colors = (base + 0.12 * torch.sin(6 * means[:, [1, 0, 2]]) + 0.03 * torch.randn(n, 3, generator=g)).clamp(0, 1)
    sh = torch.zeros(n, 16, 3)
    sh[:, 0] = (colors - 0.5) / 0.28209479177387814                      # DC term: colour = 0.5 + C0 * f_dc
    sh[:, 1:] = 0.04 * torch.randn(n, 15, 3, generator=g)
    return Scene(means.float(), quats.float(), scales.float(), opacities.float(), colors.float(), sh.float())
