"""Random splatting scenes and comparison helpers for the kernel-vs-reference tests."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.render.camera import intrinsics, orbit


@dataclass
class Case:
    n: int
    width: int
    height: int
    cameras: int
    sh_degree: int | None
    seed: int

    def __str__(self) -> str:
        return f"N{self.n}-{self.width}x{self.height}-C{self.cameras}-sh{self.sh_degree}-s{self.seed}"


def random_scene(case: Case, device: str = "cpu"):
    """Fresh random Gaussians in front of `case.cameras` cameras: a mix of small and large, some behind the
    camera or off-screen so culling is exercised. Returns (params list, viewmats [C,4,4], Ks [C,3,3])."""
    g = torch.Generator().manual_seed(case.seed)
    n = case.n
    means = torch.randn(n, 3, generator=g) * torch.tensor([0.6, 0.6, 0.5])
    means[: n // 20, 2] -= 4.0                                           # a few behind the cameras
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(torch.randn(n, 3, generator=g) * 0.5 - 3.2)
    scales[: n // 10] *= 6                                               # some large splats
    opacities = torch.rand(n, generator=g) * 0.98 + 0.01
    if case.sh_degree is None:
        colors = torch.rand(n, 3, generator=g)
    else:
        colors = torch.randn(n, (case.sh_degree + 1) ** 2, 3, generator=g) * 0.3
    viewmats = torch.stack([orbit(torch.zeros(3), 3.0, a, height=0.3 * i) for i, a in
                            enumerate(torch.linspace(-20, 35, case.cameras).tolist())])
    Ks = torch.stack([intrinsics(case.width, case.height, 45.0 + 5 * i) for i in range(case.cameras)])
    params = [t.to(device) for t in (means, quats, scales, opacities, colors)]
    return params, viewmats.to(device), Ks.to(device)


def max_diff_report(a: torch.Tensor, b: torch.Tensor, what: str) -> tuple[float, str]:
    """Largest |a - b|, and a message naming where it is and the shape."""
    d = (a.float() - b.float()).abs()
    if d.numel() == 0:
        return 0.0, f"{what}: empty"
    i = int(d.argmax())
    idx = tuple(int(v) for v in torch.unravel_index(torch.tensor(i), d.shape))
    return float(d.max()), f"{what}: max |diff| {float(d.max()):.3g} at {idx} of shape {tuple(d.shape)} " \
                           f"(kernel {a.flatten()[i].item():.6g}, reference {b.flatten()[i].item():.6g})"


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Norm-wise relative error of a against the reference b."""
    return float((a - b).norm() / b.norm().clamp(min=1e-12))
