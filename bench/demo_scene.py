"""A procedural, avatar-like Gaussian scene for the demo, the benchmarks and the tests: surfels (splats
flattened along the surface normal) on a head-and-torso shape, dense enough that the surface is opaque as a
fitted avatar's is, plus 1% large soft splats (hair, glow) behind. Coloured by region and position.
`scene_stats` reports how opaque a render of it is, so benchmarks can state what they measured."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from engine.render.gaussians import Gaussians, rgb_to_sh_dc


@dataclass
class Scene(Gaussians):
    """Gaussians (sh [N, 16, 3]: degree-3 SH whose DC term reproduces `colors`) plus the plain colours [N, 3]
    for renders without SH."""
    colors: Tensor


def rotmat_to_quat(R: Tensor) -> Tensor:
    """Rotation matrices [..., 3, 3] -> unit quaternions [..., 4] wxyz (Shepperd's method, branch-free pick)."""
    m = R.reshape(-1, 3, 3)
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cand = torch.stack([
        torch.stack([1 + tr, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1),
        torch.stack([m[:, 2, 1] - m[:, 1, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2], m[:, 0, 1] + m[:, 1, 0],
                     m[:, 0, 2] + m[:, 2, 0]], -1),
        torch.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0], 1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2],
                     m[:, 1, 2] + m[:, 2, 1]], -1),
        torch.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1],
                     1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1),
    ], 1)                                                                 # [B, 4 candidates, 4]
    best = torch.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], -1).argmax(-1)
    q = cand[torch.arange(m.shape[0]), best]
    q = q / q.norm(dim=-1, keepdim=True)
    return q.reshape(R.shape[:-2] + (4,))


def _surfels(g: torch.Generator, n: int, center, radii):
    """n points on an ellipsoid with their unit normals [n, 3] and a frame whose z axis is the normal."""
    d = torch.randn(n, 3, generator=g)
    d = d / d.norm(dim=-1, keepdim=True)
    r = torch.tensor(radii)
    pts = torch.tensor(center) + d * r
    normal = d / r
    normal = normal / normal.norm(dim=-1, keepdim=True)
    helper = torch.where(normal[:, :1].abs() < 0.9, torch.tensor([[1.0, 0, 0]]), torch.tensor([[0, 1.0, 0]]))
    t1 = torch.linalg.cross(normal, helper)
    t1 = t1 / t1.norm(dim=-1, keepdim=True)
    t2 = torch.linalg.cross(normal, t1)
    spin = torch.rand(n, 1, generator=g) * 2 * math.pi                  # random in-plane orientation
    a, b = torch.cos(spin) * t1 + torch.sin(spin) * t2, -torch.sin(spin) * t1 + torch.cos(spin) * t2
    return pts, torch.stack([a, b, normal], -1)                          # frame columns: tangent, tangent, normal


HEAD = ((0.0, -0.55, 0.0), (0.17, 0.22, 0.19))
BODY = ((0.0, 0.25, 0.05), (0.38, 0.45, 0.2))
HALO = ((0.0, -0.1, 0.25), (0.45, 0.7, 0.15))


def avatar_like_scene(n: int, seed: int = 0, coverage: float = 4.0) -> Scene:
    """n Gaussians: 59% head and 40% torso surfels, 1% large soft splats behind. `coverage` is how many
    surfels overlap a surface point on average (4 makes the surface opaque, like a fitted avatar)."""
    if n < 100:
        raise ValueError(f"n: need at least 100 Gaussians, got {n}")
    g = torch.Generator().manual_seed(seed)
    n_big = n // 100
    n_head = int(0.59 * n)
    n_body = n - n_head - n_big
    parts = []
    for count, (center, radii) in ((n_head, HEAD), (n_body, BODY)):
        pts, frame = _surfels(g, count, center, radii)
        a, b, c = radii
        area = 4 * math.pi * ((a * b) ** 1.6 + (a * c) ** 1.6 + (b * c) ** 1.6) ** (1 / 1.6) / 3  # Thomsen
        sigma = math.sqrt(coverage * area / (count * 2 * math.pi))     # per-surfel footprint 2 pi sigma^2
        s = sigma * torch.exp(0.25 * torch.randn(count, 2, generator=g))
        scales = torch.cat([s, 0.15 * s.mean(-1, keepdim=True)], -1)     # flat along the normal
        parts.append((pts, rotmat_to_quat(frame), scales))
    halo = HALO[0], HALO[1]
    big_pts = torch.tensor(halo[0]) + torch.randn(n_big, 3, generator=g) * torch.tensor(halo[1]) * 0.5
    big_q = torch.randn(n_big, 4, generator=g)
    parts.append((big_pts, big_q / big_q.norm(dim=-1, keepdim=True),
                  0.035 * torch.exp(0.3 * torch.randn(n_big, 3, generator=g))))
    means, quats, scales = (torch.cat(x) for x in zip(*parts))
    opacities = torch.cat([0.7 + 0.3 * torch.rand(n_head + n_body, generator=g),
                           0.1 + 0.25 * torch.rand(n_big, generator=g)])
    base = torch.tensor([[0.93, 0.76, 0.65]] * n_head + [[0.2, 0.35, 0.65]] * n_body + [[0.35, 0.22, 0.12]] * n_big)
    colors = (base + 0.12 * torch.sin(9 * means[:, [1, 0, 2]]) + 0.03 * torch.randn(n, 3, generator=g)).clamp(0, 1)
    sh = torch.zeros(n, 16, 3)
    sh[:, 0] = rgb_to_sh_dc(colors)
    sh[:, 1:] = 0.04 * torch.randn(n, 15, 3, generator=g)
    return Scene(means.float(), quats.float(), scales.float(), opacities.float(), sh.float(), colors.float())


def scene_stats(alphas: Tensor) -> dict:
    """How opaque a render is: alphas [..., H, W, 1] -> covered fraction, mean alpha where covered, and the
    fraction of covered pixels whose transmittance ran out (T < 1e-4, where tiles stop early)."""
    covered = alphas > 0.5
    return {"covered_fraction": round(float(covered.float().mean()), 3),
            "mean_alpha_covered": round(float(alphas[covered].mean()) if covered.any() else 0.0, 4),
            "saturated_fraction_covered": round(float((alphas[covered] > 1 - 1e-4).float().mean())
                                                if covered.any() else 0.0, 3)}


def main() -> None:
    """Writes the scene as a standard 3DGS .ply (for `audioavatar render`, or a web viewer):
    python bench/demo_scene.py --write out/demo_scene.ply"""
    import argparse

    from engine.render.ply import GaussianPly, write_ply

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--write", required=True)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    s = avatar_like_scene(args.n, args.seed)
    write_ply(args.write, GaussianPly.from_activated(s.means, s.quats, s.scales, s.opacities, s.sh[:, :1]))
    print(args.write)


if __name__ == "__main__":
    main()
