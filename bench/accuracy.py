"""Measured agreement, one JSON line per case: the C++ kernel vs the pure-torch reference (images, alphas,
gradients) and our projection vs gsplat's pure-torch projection. The tests assert the bars; this prints the
figures for reports.

Usage: python bench/accuracy.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import cuda_ext  # noqa: E402
from cuda_ext import ops  # noqa: E402
from splat_cases import Case, random_scene, rel_err  # noqa: E402

CASES = [Case(400, 64, 48, 1, 0, 2), Case(400, 64, 64, 2, 3, 3), Case(2500, 96, 80, 2, 3, 4),
         Case(1500, 128, 96, 1, None, 5), Case(20000, 256, 256, 2, 3, 6)]


def kernel_vs_reference(case: Case) -> dict:
    params, viewmats, Ks = random_scene(case)
    out = {}
    for backend in ("kernel", "reference"):
        leaves = [p.clone().requires_grad_(True) for p in params]
        img, alpha, _ = cuda_ext.rasterization(*leaves, viewmats, Ks, case.width, case.height,
                                               sh_degree=case.sh_degree, backend=backend)
        w = torch.rand(img.shape, generator=torch.Generator().manual_seed(7))
        ((img * w).sum() + alpha.sum()).backward()
        out[backend] = (img.detach(), alpha.detach(), [p.grad for p in leaves])
    (ik, ak, gk), (ir, ar, gr) = out["kernel"], out["reference"]
    d = (ik - ir).abs()
    row = {"case": str(case), "image_max_abs_diff": float(d.max()), "image_values": d.numel(),
           "image_values_over_1e-4": int((d > 1e-4).sum()), "alpha_max_abs_diff": float((ak - ar).abs().max())}
    for name, a, b in zip(("means", "quats", "scales", "opacities", "colors"), gk, gr):
        row[f"grad_{name}_rel_err"] = float(f"{rel_err(a, b):.3g}")
    return row


def projection_vs_gsplat(case: Case) -> dict:
    from gsplat.cuda import _torch_impl as g

    (means, quats, scales, _, _), viewmats, Ks = random_scene(case)
    ours = ops.fully_fused_projection(means, quats, scales, viewmats, Ks, case.width, case.height)
    covars, _ = g._quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    theirs = g._fully_fused_projection(means, covars, viewmats, Ks, case.width, case.height)
    valid = (theirs[0] > 0).all(-1)
    row = {"case": str(case), "vs": "gsplat._torch_impl", "kept": int(valid.sum()),
           "radii_mismatches": int((ours[0] != theirs[0]).any(-1).sum())}
    for i, name in ((1, "means2d"), (2, "depths"), (3, "conics")):
        a, b = ours[i][valid], theirs[i][valid]
        row[f"{name}_max_abs_diff"] = float((a - b).abs().max())
        # relative to the value's own size (at least 1): splats near the near plane project to ~1e5 px
        row[f"{name}_max_rel_diff"] = float(((a - b).abs() / b.abs().clamp(min=1.0)).max())
    return row


if __name__ == "__main__":
    for case in CASES:
        print(json.dumps(kernel_vs_reference(case)), flush=True)
    try:
        for case in CASES[2:]:
            print(json.dumps(projection_vs_gsplat(case)), flush=True)
    except ImportError:
        print(json.dumps({"vs": "gsplat", "skipped": "gsplat is not installed"}))
