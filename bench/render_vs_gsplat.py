"""Our CUDA splatting kernels against gsplat's (an external implementation) on one GPU, one JSON line per case.

Usage: python bench/render_vs_gsplat.py [--cases 512x512/50k,1024x1024/500k] [--repeats 20]
Needs a CUDA GPU and gsplat (its CUDA backend builds on first use, several minutes). Same scene
(bench.demo_scene, SH degree 3, one camera), same arguments on both sides (gsplat with packed=False,
rasterize_mode="classic", as our kernel). Reports forward/backward medians for each, their ratio measured in
the same run, and the largest per-pixel difference of the two images and of the gradients.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import cuda_ext
from engine.render.camera import intrinsics, orbit
from demo_scene import avatar_like_scene


def run(fn, params, weights, repeats: int) -> dict:
    fwd, bwd = [], []
    for i in range(repeats + 3):                                          # three warm-ups
        for p in params:
            p.grad = None
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        img = fn(*params)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        (img * weights).sum().backward()
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        if i >= 3:
            fwd.append(1e3 * (t1 - t0))
            bwd.append(1e3 * (t2 - t1))
    return {"forward_ms": statistics.median(fwd), "backward_ms": statistics.median(bwd), "image": img.detach(),
            "grads": [p.grad.detach().clone() for p in params]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="256x256/10k,512x512/50k,512x512/200k,1024x1024/500k")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("render_vs_gsplat: torch sees no CUDA GPU")
    import gsplat

    for case in args.cases.split(","):
        res, n = case.split("/")
        w, h = (int(v) for v in res.lower().split("x"))
        n = int(float(n.lower().replace("k", "e3")))
        scene = avatar_like_scene(n, seed=0)
        viewmat = orbit(torch.tensor([0.0, -0.1, 0.0]), 2.6, 15.0)[None].cuda()
        K = intrinsics(w, h, 40.0)[None].cuda()
        params = [t.cuda().clone().requires_grad_(True)
                  for t in (scene.means, scene.quats, scene.scales, scene.opacities, scene.sh)]
        weights = torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(0)).cuda()

        def ours(*p):
            return cuda_ext.rasterization(*p, viewmat, K, w, h, sh_degree=3, backend="kernel")[0]

        def theirs(*p):
            return gsplat.rasterization(*p, viewmat, K, w, h, sh_degree=3, packed=False,
                                        rasterize_mode="classic")[0]

        a, b = run(ours, params, weights, args.repeats), run(theirs, params, weights, args.repeats)
        names = ("means", "quats", "scales", "opacities", "sh")
        row = {"case": case, "device": torch.cuda.get_device_name(), "gaussians": n,
               "ours_forward_ms": round(a["forward_ms"], 3), "ours_backward_ms": round(a["backward_ms"], 3),
               "gsplat_forward_ms": round(b["forward_ms"], 3), "gsplat_backward_ms": round(b["backward_ms"], 3),
               "forward_ratio_ours_over_gsplat": round(a["forward_ms"] / b["forward_ms"], 2),
               "backward_ratio_ours_over_gsplat": round(a["backward_ms"] / b["backward_ms"], 2),
               "image_max_abs_diff": float((a["image"] - b["image"]).abs().max()),
               "image_values_over_1e-3": int(((a["image"] - b["image"]).abs() > 1e-3).sum())}
        for name, ga, gb in zip(names, a["grads"], b["grads"]):
            row[f"grad_{name}_rel_err"] = float((ga - gb).norm() / gb.norm().clamp(min=1e-12))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
