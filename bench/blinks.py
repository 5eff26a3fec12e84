"""Do blinks close the eyes? Procedural motion on an avatar for about 12 s of speech, measured from outside.

The avatar speaks the held-out espeak-ng clips (assets/speech/heldout/*.flac, back to back) with the procedural
motion source; mediapipe's face mesh runs on every rendered frame (bench/phonemes.render_clip) and gives the
eye openness of bench/phoneme_metrics (lid distances 159-145 and 386-374, averaged, in eye widths). Printed, one
JSON line: the lowest openness over the clip's median openness (issue 18's bar: <= 0.30), the median, and the
number of blinks (bench/phoneme_metrics.count_blinks: runs of frames at <= 30% of the median), and for each
blink the motion made (their frames do not depend on the audio) the lowest openness over the median.

With --png, writes the eye region of the most-closed frame next to the same region of a median frame, 4x
enlarged, so a closed eye can be told from a smear by eye. With --still, writes the eye region rendered at 4x
the photo's resolution with the blink alone (no head motion) at 0, 1/2 and the whole way, and where the closed
frame differs from the open one (white: changed): whatever is lit outside the lids has bent.

--face frames the camera on the face (the photo camera, zoomed so the face fills a size x size frame): on a
whole-body photo the eyes are otherwise a few pixels tall and the face mesh's lid points mostly noise.

Usage: python bench/blinks.py AVATAR_DIR [--seconds 12] [--size 512] [--face [--margin 1.6]] [--png eyes.png]
       [--still still.png]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import phoneme_metrics as pm  # noqa: E402
from bench.phonemes import render_clip  # noqa: E402

EYE_RING = (33, 133, 159, 145, 263, 362, 386, 374, 70, 300, 105, 334)   # eye corners, lids and brows


def heldout_speech(seconds: float) -> np.ndarray:
    """The held-out clips back to back at 16 kHz, cut to `seconds`: [S] float32."""
    from engine.audio.features import load_audio
    waves, total = [], 0
    for path in sorted((ROOT / "assets" / "speech" / "heldout").glob("*.flac")):
        waves.append(load_audio(path).numpy())
        total += waves[-1].shape[0]
        if total >= seconds * 16000:
            break
    return np.concatenate(waves)[: int(seconds * 16000)]


def eye_box(lm: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """A box (x0, y0, x1, y1) around both eyes and brows of landmarks [478, 3], with a margin."""
    pts = lm[list(EYE_RING), :2]
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    mx, my = 0.15 * (x1 - x0), 0.5 * (y1 - y0)
    return (int(max(x0 - mx, 0)), int(max(y0 - my, 0)), int(min(x1 + mx, shape[1])), int(min(y1 + my, shape[0])))


def face_camera(avatar, size: int, margin: float = 1.6):
    """K [3, 3] of the photo camera zoomed and shifted so that the face particles' box, widened `margin` times,
    fills a size x size frame."""
    K = avatar.camera.K.float()
    face = [i for i, n in enumerate(avatar.particle_names) if n.startswith("face:")]
    if not face:
        raise ValueError("--face: the avatar has no face particles")
    p = avatar.particles[face].float()
    pix = (K @ (p / p[:, 2:]).T).T[:, :2]
    (x0, y0), (x1, y1) = pix.min(0).values, pix.max(0).values
    s = size / (margin * float(max(x1 - x0, y1 - y0)))
    cx, cy = float(x0 + x1) / 2, float(y0 + y1) / 2
    out = K.clone()
    out[:2, :2] *= s
    out[0, 2], out[1, 2] = (K[0, 2] - cx) * s + size / 2, (K[1, 2] - cy) * s + size / 2
    return out


def write_png(path: Path, images: list[np.ndarray], lms: np.ndarray, openness: np.ndarray, label: str) -> None:
    from PIL import Image, ImageDraw
    ok = np.isfinite(openness)
    closed = int(np.nanargmin(openness))
    med = float(np.nanmedian(openness))
    typical = int(np.flatnonzero(ok)[np.argmin(np.abs(openness[ok] - med))])
    box = eye_box(np.nanmedian(lms, axis=0), images[0].shape[:2])
    tiles = []
    for i, what in ((typical, "median"), (closed, "most closed")):
        tile = Image.fromarray(images[i]).crop(box)
        tile = tile.resize((tile.width * 4, tile.height * 4), Image.LANCZOS)
        ImageDraw.Draw(tile).text((6, 4), f"{label} frame {i} {what}: {openness[i] / med:.2f}", fill=(255, 0, 0))
        tiles.append(tile)
    sheet = Image.new("RGB", (tiles[0].width, sum(t.height for t in tiles)), "white")
    y = 0
    for t in tiles:
        sheet.paste(t, (0, y))
        y += t.height
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def write_still(path: Path, avatar_dir: str, zoom: int = 4) -> None:
    """The blink alone, at 0, 1/2 and 1, rendered through the photo camera at `zoom` x the photo's size,
    cropped to the eyes, then |closed - open| (x4, white where anything changed)."""
    import torch
    from PIL import Image

    from engine.avatar.bundle import Avatar
    from engine.motion.procedural import ProceduralMotion
    from engine.view import AvatarView
    avatar = Avatar.from_pretrained(avatar_dir)
    names = avatar.particle_names
    cam = avatar.camera
    view = AvatarView.from_photo(avatar, cam.width * zoom, cam.height * zoom)
    pix = (view.K @ (avatar.particles / avatar.particles[:, 2:]).T).T[:, :2]
    eyes = pix[[names.index(f"face:{i}") for i in (33, 133, 263, 362, 159, 386)]]
    (x0, y0), x1 = eyes.min(0).values, eyes[:, 0].max()
    w = float(x1 - x0)
    box = (int(x0 - 0.25 * w), int(y0 - 0.45 * w), int(1.5 * w), int(0.8 * w))
    rig = ProceduralMotion.for_avatar(avatar)
    decoder = avatar.deformer()
    tiles = []
    with torch.no_grad():
        for b in (0.0, 0.5, 1.0):
            rgb, _, _ = view.splat(decoder, view.to_world(rig.blink_offsets(b)), box)
            tiles.append(rgb.clamp(0, 1))
    diff = ((tiles[2] - tiles[0]).abs().amax(-1, keepdim=True) * 4).clamp(0, 1).expand(-1, -1, 3)
    sheet = torch.cat(tiles + [diff], 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((sheet.numpy() * 255).round().astype(np.uint8)).save(path)


def scheduled_blinks(avatar, seed: int, frames: int) -> list[list[int]]:
    """The frames of each blink the procedural motion makes in a clip (its blinks depend on the seed and the frame
    index only, not on the audio): runs of frames where the lid of face:159 is at least half way down."""
    import dataclasses

    import torch

    from engine.avatar.particles import canonical_names
    from engine.motion.procedural import ProceduralConfig, ProceduralMotion
    still = dataclasses.replace(ProceduralConfig(), sway_deg=0.0, nod_deg=0.0, breath=0.0, gesture=0.0)
    rig = ProceduralMotion.for_avatar(avatar, still, seed)
    x = rig(torch.zeros(frames, 80), torch.zeros(frames))
    names = canonical_names()
    up, low = names.index("face:159"), names.index("face:145")
    gap = float(rig.rest[low, 1] - rig.rest[up, 1])
    down = ((x[:, up, 1] - x[:, low, 1]) / gap >= 0.5).numpy()
    runs, start = [], None
    for i, d in enumerate(list(down) + [False]):
        if d and start is None:
            start = i
        elif not d and start is not None:
            runs.append(list(range(start, i)))
            start = None
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("avatar")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--face", action="store_true", help="a size x size frame on the face, not the whole photo")
    ap.add_argument("--margin", type=float, default=1.6,
                    help="--face: the frame is this many face widths (a profile needs more for the face detector)")
    ap.add_argument("--png", type=Path, help="write the eye crops of the most-closed and a median frame here")
    ap.add_argument("--label", default="", help="text on the png")
    ap.add_argument("--still", type=Path, help="write the blink alone at 0, 1/2, 1 and its difference map here")
    args = ap.parse_args()
    if args.still:
        write_still(args.still, args.avatar)
    from engine.runtime import AvatarEngine, EngineConfig
    engine = AvatarEngine(args.avatar, EngineConfig(width=args.size, height=args.size, motion="procedural",
                                                    seed=args.seed))
    if args.face:
        engine.set_camera(engine.viewmat, face_camera(engine.avatar, args.size, args.margin))
    lms, images = render_clip(engine, heldout_speech(args.seconds))
    m = pm.frame_measures(lms)
    o = m["openness"]
    med = float(np.nanmedian(o))
    per_blink = [round(float(np.nanmin(o[max(r[0] - 1, 0): r[-1] + 2])) / med, 3)
                 for r in scheduled_blinks(engine.avatar, args.seed, len(o))]
    print(json.dumps({"avatar": args.avatar, "size": args.size, "face": args.face and args.margin,
                      "frames": int(o.shape[0]), "no_face": int((~np.isfinite(o)).sum()),
                      "median_openness": round(med, 4), "min_openness": round(float(np.nanmin(o)), 4),
                      "min_over_median": round(float(np.nanmin(o)) / med, 3),
                      "most_closed_frame": int(np.nanargmin(o)), "blinks": pm.count_blinks(o),
                      "per_blink_min_over_median": per_blink}), flush=True)
    if args.png:
        write_png(args.png, images, lms, o, args.label)


if __name__ == "__main__":
    main()
