"""Rendering speed of the compiled kernel (C++ on CPU, CUDA on GPU) vs the pure-torch reference, one JSON line per case.

Usage: python bench/render.py [--cases 256x256/10k,512x512/50k,512x512/200k] [--repeats 7] [--ref-repeats 2]
                              [--device cpu|cuda]
Keys are prefixed with the device (cpu_forward_ms, cuda_forward_ms, ...); the reference runs on the same device.
Each case renders the avatar-like demo scene (bench.demo_scene) filling the frame, SH degree 3, one camera.
forward_ms: rasterization() end to end (projection, SH, binning, compositing); backward_ms: loss.backward()
for a weighted sum of the image. Medians after a warm-up, kernel and reference measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import cuda_ext
from engine.render.camera import intrinsics, orbit
from demo_scene import avatar_like_scene, scene_stats


def parse_case(s: str) -> tuple[int, int, int]:
    res, n = s.split("/")
    w, h = (int(v) for v in res.lower().split("x"))
    n = int(float(n.lower().replace("k", "e3")))
    return w, h, n


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_backend(scene, viewmat, K, w, h, backend: str, repeats: int, device: str = "cpu") -> dict:
    params = [t.to(device).clone().requires_grad_(True)
              for t in (scene.means, scene.quats, scene.scales, scene.opacities, scene.sh)]
    viewmat, K = viewmat.to(device), K.to(device)
    weights = torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(0)).to(device)
    fwd, bwd = [], []
    for i in range(repeats + 1):                                          # first iteration is the warm-up
        for p in params:
            p.grad = None
        _sync(device)
        t0 = time.perf_counter()
        img, _, _ = cuda_ext.rasterization(*params, viewmat, K, w, h, sh_degree=3, backend=backend)
        _sync(device)
        t1 = time.perf_counter()
        (img * weights).sum().backward()
        _sync(device)
        t2 = time.perf_counter()
        if i:
            fwd.append(1e3 * (t1 - t0))
            bwd.append(1e3 * (t2 - t1))
    return {"forward_ms": statistics.median(fwd), "backward_ms": statistics.median(bwd), "image": img.detach().cpu()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="256x256/10k,512x512/50k,512x512/200k")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--ref-repeats", type=int, default=2)
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA GPU")
    dev = args.device
    for case in args.cases.split(","):
        w, h, n = parse_case(case)
        scene = avatar_like_scene(n, seed=0)
        viewmat = orbit(torch.tensor([0.0, -0.1, 0.0]), 2.6, 15.0)[None]
        K = intrinsics(w, h, 40.0)[None]
        k = time_backend(scene, viewmat, K, w, h, "kernel", args.repeats, dev)
        with torch.no_grad():
            _, alphas, meta = cuda_ext.rasterization(scene.means, scene.quats, scene.scales, scene.opacities,
                                                     scene.colors, viewmat, K, w, h)
        row = {"case": case, "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
               "width": w, "height": h, "gaussians": n, "threads": torch.get_num_threads(),
               f"{dev}_forward_ms": round(k["forward_ms"], 3), f"{dev}_backward_ms": round(k["backward_ms"], 3),
               f"{dev}_fps": round(1e3 / k["forward_ms"], 1),
               "backward_over_forward": round(k["backward_ms"] / k["forward_ms"], 2),
               "tile_intersections": int(meta["flatten_ids"].numel()), **scene_stats(alphas)}
        if not args.skip_reference:
            r = time_backend(scene, viewmat, K, w, h, "reference", args.ref_repeats, dev)
            row.update({"reference_forward_ms": round(r["forward_ms"], 1),
                        "reference_backward_ms": round(r["backward_ms"], 1),
                        "reference_fps": round(1e3 / r["forward_ms"], 3),
                        "speedup_vs_reference": round(r["forward_ms"] / k["forward_ms"], 1),
                        "backward_speedup_vs_reference": round(r["backward_ms"] / k["backward_ms"], 1),
                        "max_abs_diff_vs_reference": float((k["image"] - r["image"]).abs().max()),
                        "values_over_1e-4_vs_reference": int(((k["image"] - r["image"]).abs() > 1e-4).sum())})
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
