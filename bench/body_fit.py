"""The body template's fit to a photo (engine.avatar.body_fit), one JSON line per photo, and a picture of it.

For each photo, cropped and scaled as personalize does:
- fit_s: the wall time of fit_body (250 Adam steps) and depth_s: of body_depth;
- error_px: the median reprojection error of the landmarks used, landmarks: how many;
- covered: the share of the person mask the fitted body covers; outside: the share of the body's pixels
  off the mask (a fit that misses the person shows as a low covered or a high outside);
- yaw_deg: the starting turn the shoulders suggest (body_fit.initial_yaw).
Picture (--out DIR/<stem>_fit.png): the photo with the fitted body in green and the landmarks in red | the
body's half-thickness | its middle (light = farther), both from engine.avatar.depth.template_body.

Usage: python bench/body_fit.py PHOTO [PHOTO ...] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.avatar.body_fit import body_depth, fit_body, initial_yaw, usable_landmarks  # noqa: E402
from engine.avatar.depth import template_body  # noqa: E402
from engine.avatar.inflate import inflate_open  # noqa: E402
from engine.avatar.landmarks import detect, person_mask  # noqa: E402
from engine.avatar.personalize import DECODE_SIDE, PersonalizeConfig  # noqa: E402
from engine.avatar.photo import crop, load_photo, person_box  # noqa: E402
from engine.avatar.template import load_template  # noqa: E402
from engine.render.camera import intrinsics  # noqa: E402


def grey(t, mask) -> np.ndarray:
    """t [H, W] scaled to 0..255 over the mask, as RGB."""
    v = t.numpy()
    m = mask.numpy()
    lo, hi = (float(v[m].min()), float(v[m].max())) if m.any() else (0.0, 1.0)
    out = np.clip((v - lo) / max(hi - lo, 1e-6), 0, 1) * m
    return (np.stack([out] * 3, -1) * 255).astype(np.uint8)


def one(photo: str, out: Path, cfg: PersonalizeConfig) -> dict:
    full, _ = load_photo(photo, max_side=max(cfg.max_side, DECODE_SIDE))
    box = person_box(person_mask(full))
    image = crop(full, box or (0, 0, full.shape[1], full.shape[0]), cfg.max_side)
    lm = detect(image)
    H, W = image.shape[:2]
    K, z0 = intrinsics(W, H, cfg.fov_y_deg), cfg.shell.z0
    t = time.perf_counter()
    fit = fit_body(lm.pose, K, W, H, z0, cfg.body_fit_steps)
    fit_s = time.perf_counter() - t
    row = {"photo": Path(photo).name, "size": [W, H], "fit_s": round(fit_s, 2)}
    if fit is None:
        return row | {"fitted": False}
    t = time.perf_counter()
    front, back, covered = body_depth(fit, K, W, H, z0)
    person = lm.mask > 0.5
    row |= {"fitted": True, "depth_s": round(time.perf_counter() - t, 2), "error_px": round(fit.error_px, 2),
            "landmarks": len(fit.used),
            "covered": round(float((covered & person).sum() / person.sum()), 3),
            "outside": round(float((covered & ~person).sum() / max(int(covered.sum()), 1)), 3),
            "yaw_deg": round(math.degrees(initial_yaw(lm.pose, usable_landmarks(lm.pose, W, H), load_template())), 1)}
    half, middle = template_body(person, cfg.shell.thickness * inflate_open(person), front, back, covered)
    shown = (image.numpy() * 255).astype(np.uint8)
    c = covered.numpy()
    shown[c] = (0.55 * shown[c] + 0.45 * np.array([0, 255, 0])).astype(np.uint8)
    for x, y, _, vis in lm.pose.tolist():
        if vis > 0.5 and 0 <= x < W and 0 <= y < H:
            shown[max(int(y) - 2, 0):int(y) + 3, max(int(x) - 2, 0):int(x) + 3] = (255, 0, 0)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{Path(photo).stem}_fit.png"
    Image.fromarray(np.concatenate([shown, grey(half, person), grey(middle, person)], 1)).save(path)
    return row | {"file": str(path)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", nargs="+")
    ap.add_argument("--out", default="/tmp/body_fit_bench")
    args = ap.parse_args()
    for photo in args.photos:
        print(json.dumps(one(photo, Path(args.out), PersonalizeConfig())), flush=True)


if __name__ == "__main__":
    main()
