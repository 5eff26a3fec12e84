"""Compositing tile size on the CPU: rasterization() with 16, 32 and 64 px square tiles, the same avatar,
interleaved in one run, one JSON line per frame size and pass.

Usage: python bench/tile_size.py [--avatar DIR] [--sizes 256,512,1024] [--repeats 9] [--tiles 16,32,64]
Without --avatar the bundled photo is personalized first (about 30 s). The avatar is rendered from its photo
camera as AvatarView does (the Gaussians facing the camera), forward alone (the live engine) and forward +
backward (distillation, the photometric fit). `identical`: the images of every tile size equal bit for bit
(the blend order of a pixel is the depth order whatever the tiles). Medians after a warm-up; ratio = each
tile size's median over the first one's, measured in the same run. cuda_ext.rendering.default_tile_size (the
CPU kernel's default) follows from this.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.threads import configure_threads  # noqa: E402

configure_threads(None)
import torch  # noqa: E402

import cuda_ext  # noqa: E402
from _avatar import avatar_folder  # noqa: E402


def render(g, viewmat, K, size: int, tile: int, grad: bool) -> tuple[float, torch.Tensor]:
    """One render of Gaussians g at size x size with the given tile size -> (milliseconds, image)."""
    means, sh = g.means.clone().requires_grad_(grad), g.sh.clone().requires_grad_(grad)
    t0 = time.perf_counter()
    img, alpha, _ = cuda_ext.rasterization(means, g.quats, g.scales, g.opacities, sh, viewmat[None], K[None],
                                           size, size, sh_degree=0, backgrounds=torch.ones(1, 3), tile_size=tile)
    if grad:
        (img.sum() + alpha.sum()).backward()
    return 1e3 * (time.perf_counter() - t0), img.detach()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--avatar", default=None)
    ap.add_argument("--sizes", default="256,512,1024")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--tiles", default="16,32,64")
    args = ap.parse_args()
    tiles = [int(t) for t in args.tiles.split(",")]
    from engine.avatar.bundle import Avatar
    from engine.render.splat import facing
    with avatar_folder(args.avatar) as folder:
        avatar = Avatar.from_pretrained(folder)
    cam = avatar.camera
    g = avatar.gaussians
    if avatar.normals is not None:
        g = g.select(facing(avatar.normals, g.means, cam.viewmat))
    for size in (int(s) for s in args.sizes.split(",")):
        K = cam.scaled_K(size, size)
        for grad in (False, True):
            times = {t: [] for t in tiles}
            images = {}
            for i in range(args.repeats + 1):                              # interleaved; the first is a warm-up
                for t in tiles:
                    ms, images[t] = render(g, cam.viewmat, K, size, t, grad)
                    if i:
                        times[t].append(ms)
            med = {t: statistics.median(v) for t, v in times.items()}
            print(json.dumps({"size": size, "pass": "forward+backward" if grad else "forward",
                              "gaussians": len(g), "threads": torch.get_num_threads(),
                              **{f"tile{t}_ms": round(m, 2) for t, m in med.items()},
                              **{f"tile{t}_ratio": round(m / med[tiles[0]], 3) for t, m in med.items()},
                              "identical": all(torch.equal(images[t], images[tiles[0]]) for t in tiles),
                              "load_avg": round(os.getloadavg()[0], 2)}), flush=True)


if __name__ == "__main__":
    main()
