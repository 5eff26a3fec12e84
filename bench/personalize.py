"""Personalize on the bundled astronaut photo against issue 3's bars, one JSON line:
front-view PSNR and SSIM inside the person mask, face+hands vs body Gaussian density per image area,
alpha coverage of the re-projected silhouette when orbiting to -30 and +30 degrees, and wall time.

Usage: python bench/personalize.py [--photo assets/astronaut.png]
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from engine.render.camera import look_at
from engine.avatar.landmarks import detect
from engine.render.metrics import psnr, ssim
from engine.avatar.personalize import front_view_metrics, personalize
from engine.avatar.photo import load_photo
from engine.avatar.regions import BODY, EYES, FACE, HANDS, LIPS, region_map
from engine.render.splat import render_gaussians

ROOT = Path(__file__).resolve().parent.parent


def orbit_coverage(avatar, angle_deg: float) -> float:
    """Share of the re-projected silhouette (centres of Gaussians with opacity > 0.5, closed by a 3x3
    dilation) that the render covers with alpha > 0.5, seen from angle_deg around the vertical axis."""
    g, cam = avatar.gaussians, avatar.camera
    solid = g.opacities > 0.5
    target = torch.tensor([0.0, 0.0, float(g.means[solid, 2].median())])
    a = math.radians(angle_deg)
    vm = look_at(target + float(target[2]) * torch.tensor([math.sin(a), 0.0, -math.cos(a)]), target)
    _, alpha = render_gaussians(g, vm, cam.K, cam.width, cam.height, normals=avatar.normals, away=avatar.away_colour())
    c = (vm[:3, :3] @ g.means[solid].T).T + vm[:3, 3]
    uv = (cam.K @ (c / c[:, 2:]).T).T[:, :2].floor().long()
    ok = (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
    sil = torch.zeros(cam.height, cam.width)
    sil[uv[ok, 1], uv[ok, 0]] = 1
    sil = torch.nn.functional.max_pool2d(sil[None, None], 3, 1, 1)[0, 0] > 0
    return float((alpha[..., 0][sil] > 0.5).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", default=str(ROOT / "assets" / "astronaut.png"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    avatar = personalize(args.photo, progress=False)
    wall = time.perf_counter() - t0
    image, _ = load_photo(args.photo, max_side=512)
    lm = detect(image)
    person = lm.mask > 0.5
    render = front_view_metrics(avatar, image, person)["render"]
    regions = region_map(lm, person)
    dense = torch.isin(regions, torch.tensor([FACE, LIPS, EYES, HANDS]))
    g_dense = torch.isin(avatar.regions, torch.tensor([FACE, LIPS, EYES, HANDS]))
    density_dense = int(g_dense.sum()) / max(int(dense.sum()), 1)
    density_body = int((avatar.regions == BODY).sum()) / max(int((regions == BODY).sum()), 1)
    print(json.dumps({
        "photo": Path(args.photo).name, "size": [avatar.camera.width, avatar.camera.height],
        "gaussians": len(avatar.gaussians), "particles": int(avatar.particles.shape[0]),
        "fit_steps": avatar.meta["fit"]["steps"], "threads": torch.get_num_threads(),
        "psnr_in_mask_db": round(psnr(render, image, person), 2), "ssim_in_mask": round(ssim(render, image, person), 4),
        "density_face_hands_per_px": round(density_dense, 3), "density_body_per_px": round(density_body, 3),
        "density_ratio": round(density_dense / density_body, 2),
        "orbit_coverage_minus30": round(orbit_coverage(avatar, -30.0), 4),
        "orbit_coverage_plus30": round(orbit_coverage(avatar, 30.0), 4),
        "wall_s": round(wall, 1)}))


if __name__ == "__main__":
    main()
