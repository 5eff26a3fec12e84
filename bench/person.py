"""Issue 18's bars on any photo, one JSON line: orbit see-through, back vs front, teeth and lip closure while
talking, blinks, front re-render fidelity, the "raise right hand" gesture, and personalize time.

Usage: python bench/person.py --photo PATH [--avatar DIR] [--save-avatar DIR] [--out DIR] [--size 512]
                              [--motion procedural|learned] [--audio FILE] [--seconds 12]
                              [--skip orbit,mouth,blink,gesture]
Without --avatar the photo is personalized first (personalize_s: its wall time); --avatar loads a bundle made
from the same photo instead. Speech: --audio, or the held-out clips (assets/speech/heldout) in name order, back
to back; either is repeated and cut to --seconds (procedural blinks come every ~4 s). Pictures go to --out
(default /tmp/person_bench/<photo stem>). A frame where mediapipe finds no face / no pose is skipped and counted.

Definitions (pixels of the rendered frame; "eye width" = |p33 - p263| of mediapipe's face mesh):
  orbit       12 views, yaw 0, 30, .., 330 about the vertical axis through the avatar's centre, framed and
              rendered as `audioavatar render --orbit` does (turntable.orbit_viewmats / render_view, the
              avatar's normals for culling), --size px, white background. Silhouette = alpha > 0.5; filled =
              binary_fill_holes(binary_closing(silhouette, 3x3, 2 iterations)), so a thin see-through stripe
              that cuts the silhouette still counts; see_through = |filled & alpha < 0.5| / |filled|, per view;
              bar: the max <= 0.01.
  back_front  grey = RGB mean; band = gauss(grey, 2) - gauss(grey, 10); the yaw-180 view mirrored left-right;
              Pearson correlation of the two bands over the pixels both alphas > 0.5 cover; bar <= 0.15.
              The white background darkens both bands along the silhouette, and that shared rim alone
              correlates: back_front_corr_inside (no bar) blurs inside each silhouette only (normalised
              convolution), the texture's own share; back_front_corr_flat_back (no bar) is the same figure
              with the back's texture gone (the back view's alpha over white in its own mean colour): what the
              rim alone gives, the floor no back texture can go below by much.
  talking     AvatarEngine (--motion, photo camera, --size px on the longer side) driven by the speech; face mesh per frame
              (bench/phonemes.render_clip). gap = |p13 - p14| in eye widths (the clip's median eye width,
              bench/phoneme_metrics.frame_measures); half-open frames: gap >= 0.5 x the clip's max gap. Inner-lip
              area: the polygon INNER_LIP rasterised; tooth-like pixel: luminance 0.299R + 0.587G + 0.114B >= 0.55
              and chroma max - min <= 0.15 (RGB in [0, 1]). tooth_share = median over half-open frames of the
              tooth-like share of the area; bar >= 0.15 (closed-mouth photo). lip_gap_min: the clip's min gap;
              bar <= 0.03.
  blink       eye openness = mean of |p159 - p145| / |p33 - p133| and |p386 - p374| / |p362 - p263|;
              blink_ratio = min / median openness, bar <= 0.30; blinks: runs <= 0.3 x median (count_blinks).
              blink_ratio_painted_shut (no bar): the frame of median openness with both eyes painted shut
              (paint_eyes_shut: the openings inpainted from the skin around them, a lash line on the lower lid),
              its openness over that frame's: what mediapipe reads on a shut eye of this face, the figure's
              floor (glasses, a cartoon face, downcast or small eyes read 0.45-1.15 painted shut).
  front       the photo-camera render vs the photo (cropped and scaled as personalize did) inside the person
              mask (mediapipe selfie segmentation > 0.5): PSNR >= 30 dB, SSIM >= 0.90 (engine.render.metrics).
              front_ssim_white_outside (no bar): the same with the photo white outside the mask, as the render
              is; on a small person most of the first figure's shortfall is windows that straddle the silhouette.
  gesture     only when mediapipe pose (complexity 1; a render it finds no one in is read again mirrored) on the front
              render sees both shoulders and wrists (visibility > 0.5). As bench/gestures.py: speech pushed, 5 frames,
              then command("raise right hand"); the window's frames are rendered with and without the command. Pose on
              every window frame of the command run; the frame of largest right-wrist lift (shoulder 12 y - wrist 16
              y) is compared: met when wrist y < shoulder y; left_arm_moved = max over pose 11, 13, 15 of the shift
              against the same frame without the command, in shoulder widths (|p11 - p12|); unmoved: < 0.1. Also:
              whether the wrist was above the shoulder without the command (then the bar says little), and how far the
              command raised it (wrist_raised_sw, shoulder widths).
  personalize_s  wall time of engine.avatar.personalize.personalize, the splatting kernels already built;
              load_avg (1 min) says how busy the machine was.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import phoneme_metrics as pm
from bench.phonemes import render_clip

# upper inner lip left to right, then the lower one back
INNER_LIP = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95]
BARS = {"see_through_max": ("<=", 0.01), "back_front_corr": ("<=", 0.15), "tooth_share": (">=", 0.15),
        "lip_gap_min": ("<=", 0.03), "blink_ratio": ("<=", 0.30), "front_psnr_db": (">=", 30.0),
        "front_ssim": (">=", 0.90), "wrist_above_shoulder": ("==", True), "left_arm_moved": ("<", 0.1),
        "personalize_s": (None, None)}
TEETH_MARK, CUT_MARK = (0, 230, 0), (255, 0, 0)
PAINT_ABOVE = 0.3           # an eye painted shut: the opening and this x its height above it (the lash band)
LASH_RGB = (40, 25, 20)     # ... with a lash line of this colour along the lower lid
WRITTEN: list[str] = []                                  # the pictures this run wrote


def frame_size(avatar, size: int) -> tuple[int, int]:
    """(width, height) of engine frames: the photo camera's aspect, the longer side size (even numbers)."""
    w, h = avatar.camera.width, avatar.camera.height
    return tuple(max(16, 2 * round(v * size / max(w, h) / 2)) for v in (w, h))


def speech(audio: str | None, seconds: float) -> np.ndarray:
    """[S] float32 at 16 kHz: the file (or the held-out clips back to back), repeated and cut to seconds."""
    from engine.audio.features import load_audio
    files = [Path(audio)] if audio else sorted((ROOT / "assets" / "speech" / "heldout").glob("*.flac"))
    clips = [load_audio(f).numpy() for f in files]
    if not clips or not sum(c.shape[0] for c in clips):
        raise SystemExit(f"no speech in {files}")
    one = np.concatenate(clips)
    return np.tile(one, math.ceil(seconds * 16000 / one.shape[0]))[: int(seconds * 16000)]


def photo_as_fitted(avatar, photo: str) -> tuple[torch.Tensor | None, tuple | None]:
    """The photo as personalize fitted it (decoded, cropped to the person, scaled): [H, W, 3], or None when it
    does not match the avatar's camera (another photo or another max_side); and, as personalize has it, the
    whole photo's pose reading in the crop's pixels (detect's pose_hint), or None."""
    from engine.avatar.landmarks import person_mask_and_pose, pose_in_crop
    from engine.avatar.photo import crop, load_photo
    full, _ = load_photo(photo, max_side=2048)
    box = tuple(avatar.meta.get("crop") or (0, 0, full.shape[1], full.shape[0]))
    image = crop(full, box, max(avatar.camera.width, avatar.camera.height))
    if tuple(image.shape[:2]) != (avatar.camera.height, avatar.camera.width):
        return None, None
    return image, pose_in_crop(person_mask_and_pose(full)[1], box, image.shape[:2])


def front(avatar, photo: str) -> dict:
    """PSNR / SSIM of the photo-camera render inside the person mask (the avatar's own, as bench/personalize.py
    and bench/quality.py measure it), and the render (uint8). Also the PSNR inside the looser mask personalize
    crops by (person_mask: the unsure parts kept), which takes in pixels the avatar leaves out on purpose."""
    from engine.avatar.landmarks import detect, person_mask
    from engine.avatar.personalize import front_view_metrics
    from engine.render.metrics import psnr, ssim
    image, hint = photo_as_fitted(avatar, photo)
    if image is None:
        return {"front_psnr_db": None, "front_ssim": None, "note": "photo does not match the avatar's camera"}
    person, loose = detect(image, pose_hint=hint).mask > 0.5, person_mask(image) > 0.5
    render = front_view_metrics(avatar, image, person)["render"]
    return {"front_psnr_db": round(psnr(render, image, person), 2), "front_ssim": round(ssim(render, image, person), 4),
            "front_psnr_loose_mask_db": round(psnr(render, image, loose), 2),
            # the SSIM windows straddling the silhouette see the photo's backdrop on one side and the render's white
            # on the other: with the photo white outside the mask too, only the person is compared
            "front_ssim_white_outside": round(ssim(render, torch.where(person[..., None], image, 1.0), person), 4),
            "front_mask_px": int(person.sum()), "loose_mask_extra_px": int((loose & ~person).sum()),
            "render": (render.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()}


def see_through(alpha: np.ndarray) -> tuple[float, np.ndarray]:
    """alpha [H, W] -> (see-through share of the filled silhouette, mask [H, W] of the see-through pixels)."""
    solid = alpha > 0.5
    filled = ndimage.binary_fill_holes(ndimage.binary_closing(solid, np.ones((3, 3), bool), iterations=2)) | solid
    holes = filled & ~solid
    return float(holes.sum() / max(filled.sum(), 1)), holes


def band(rgb: np.ndarray, solid: np.ndarray | None = None) -> np.ndarray:
    """gauss(grey, 2) - gauss(grey, 10); with solid [H, W] bool, blurred inside it only (normalised convolution),
    so the white background leaves no dark rim along the silhouette."""
    grey = rgb.astype(np.float64).mean(axis=-1)
    if solid is None:
        return ndimage.gaussian_filter(grey, 2) - ndimage.gaussian_filter(grey, 10)
    w = solid.astype(np.float64)
    blur = [ndimage.gaussian_filter(grey * w, s) / np.maximum(ndimage.gaussian_filter(w, s), 1e-6) for s in (2, 10)]
    return blur[0] - blur[1]


def orbit(avatar, size: int, out: Path) -> dict:
    """See-through share of 12 orbit views, and the band-passed correlation of the front and mirrored back."""
    from engine.render.turntable import RenderConfig, orbit_viewmats, render_view
    cfg = RenderConfig(width=size, height=size, frames=12, orbit_degrees=360.0, background=1.0)
    views = []
    for vm in orbit_viewmats(avatar.gaussians, cfg):
        img, alpha = render_view(avatar.gaussians, vm, cfg, avatar.normals, avatar.away_colour())
        views.append((img.numpy(), alpha[..., 0].numpy()))
    shares, tiles = [], []
    for k, (img, alpha) in enumerate(views):
        share, holes = see_through(alpha)
        shares.append(round(share, 4))
        marked = (img * 255 + 0.5).astype(np.uint8)
        marked[holes] = CUT_MARK
        tiles.append(label(marked, f"yaw {30 * k}: {100 * share:.2f}%"))
    grid(tiles, 6, out / "orbit.png", tile=256)
    (f_img, f_alpha), (b_img, b_alpha) = views[0], views[6]
    fb, bb = band(f_img), band(b_img)[:, ::-1]
    both = (f_alpha > 0.5) & (b_alpha[:, ::-1] > 0.5)
    corr = float(np.corrcoef(fb[both], bb[both])[0, 1]) if both.sum() > 2 else math.nan
    fi, bi = band(f_img, f_alpha > 0.5), band(b_img, b_alpha > 0.5)[:, ::-1]
    inner = float(np.corrcoef(fi[both], bi[both])[0, 1]) if both.sum() > 2 else math.nan
    # the rim's own share: the same figure with the back's texture gone (its mean colour, its own alpha)
    flat = b_alpha[..., None] * b_img[b_alpha > 0.5].mean(0) + (1 - b_alpha[..., None]) * 1.0
    fl = band(flat)[:, ::-1]
    rim = float(np.corrcoef(fb[both], fl[both])[0, 1]) if both.sum() > 2 else math.nan
    shown = [show_band(b, m) for b, m in ((fb, f_alpha > 0.5), (bb, b_alpha[:, ::-1] > 0.5))]
    grid([label(shown[0], "front, band-passed"), label(shown[1], f"back mirrored; corr {corr:.3f}")], 2,
         out / "back_vs_front.png", tile=size)
    return {"see_through": shares, "see_through_max": max(shares), "back_front_corr": round(corr, 4),
            "back_front_corr_inside": round(inner, 4), "back_front_corr_flat_back": round(rim, 4),
            "back_front_pixels": int(both.sum())}


def show_band(b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A band image as uint8 grey (+-3 std inside the mask), black outside the mask."""
    s = 3 * float(b[mask].std()) if mask.any() else 1.0
    v = np.clip(0.5 + 0.5 * b / max(s, 1e-6), 0, 1) * mask
    return (np.repeat(v[..., None], 3, axis=-1) * 255 + 0.5).astype(np.uint8)


def tooth_share(img: np.ndarray, lm: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """img [H, W, 3] uint8, face mesh [478, 3] -> (tooth-like share of the inner-lip area, area mask, tooth mask)."""
    poly = Image.new("L", (img.shape[1], img.shape[0]), 0)
    ImageDraw.Draw(poly).polygon([tuple(map(float, lm[i, :2])) for i in INNER_LIP], fill=1)
    area = np.asarray(poly, bool)
    rgb = img.astype(np.float64) / 255
    light = rgb @ np.array([0.299, 0.587, 0.114]) >= 0.55
    grey = rgb.max(axis=-1) - rgb.min(axis=-1) <= 0.15
    teeth = area & light & grey
    return (float(teeth.sum() / area.sum()) if area.any() else math.nan), area, teeth


def openness(lms: np.ndarray) -> np.ndarray:
    """The blink measure's eye openness [T] of face meshes [T, 478, >=2]: the mean over both eyes of the lid gap
    (159-145, 386-374) over the eye's corner distance (33-133, 362-263)."""
    return (pm._dist(lms, 159, 145) / pm._dist(lms, 33, 133) + pm._dist(lms, 386, 374) / pm._dist(lms, 362, 263)) / 2


def paint_eyes_shut(img: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """img [H, W, 3] uint8 with both eyes painted shut by hand-made rules, from its face mesh lm [478, >=2]: each
    eye opening (the lower lid arc and the upper one raised by PAINT_ABOVE of the opening's height, widened
    2 px) filled in from the skin around it (cv2 Telea inpainting), and a dark lash line drawn along the lower
    arc. What the face tracker reads on that is the blink figure's floor on this face: a rendered blink that
    closes the lids fully cannot be expected to read much lower."""
    import cv2
    from engine.avatar.eyelids import EYES_ARCS
    mask = np.zeros(img.shape[:2], np.uint8)
    eye = float(np.linalg.norm(lm[33, :2] - lm[263, :2]))
    for upper, lower, _ in EYES_ARCS:
        up, low = lm[list(upper), :2], lm[list(lower), :2]
        height = float(np.mean(np.abs(low[:, 1] - up[:, 1])))
        poly = np.concatenate([up - [0.0, PAINT_ABOVE * height], low[::-1]])
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    mask = cv2.dilate(mask, np.ones((5, 5), np.uint8))
    out = cv2.inpaint(np.ascontiguousarray(img), mask, max(3, int(0.07 * eye)), cv2.INPAINT_TELEA)
    for _, lower, _ in EYES_ARCS:
        cv2.polylines(out, [np.round(lm[list(lower), :2]).astype(np.int32)], False, LASH_RGB,
                      max(1, int(round(0.012 * eye))), cv2.LINE_AA)
    return out


def talking(avatar, args, wave: np.ndarray, out: Path) -> dict:
    """Mouth and eye figures of the engine driven by the speech, from the face mesh of every frame."""
    from engine.runtime import AvatarEngine, EngineConfig
    engine = AvatarEngine(avatar, EngineConfig(*frame_size(avatar, args.size), motion=args.motion))
    lms, images = render_clip(engine, wave)
    found = np.isfinite(lms).all(axis=(1, 2))
    res = {"frames": len(images), "frame_size": list(images[0].shape[1::-1]), "mesh_failed": int((~found).sum())}
    if not found.any():
        return res
    m = pm.frame_measures(lms)
    gap, res["eye_width_px"] = m["gap"], round(m["unit"], 1)           # a small face: coarse mouth pixels
    eyes = openness(lms)
    unit = pm._dist(lms, 33, 263)
    if "mouth" not in args.skip:
        half = np.flatnonzero(found & (gap >= 0.5 * np.nanmax(gap)))
        shares = {int(i): tooth_share(images[i], lms[i]) for i in half}
        values = [s[0] for s in shares.values() if np.isfinite(s[0])]
        closed = int(np.nanargmin(gap))
        res.update({"tooth_share": round(float(np.median(values)), 4) if values else None, "half_open_frames": len(half),
                    "gap_max": round(float(np.nanmax(gap)), 4), "lip_gap_min": round(float(np.nanmin(gap)), 4),
                    "lip_gap_min_frame": closed})
        tiles = []
        for i in sorted(shares, key=lambda i: -gap[i])[:6]:                   # the most open: as rendered, marked
            share, area, teeth = shares[i]
            marked = images[i].copy()
            marked[area & ~teeth] = (marked[area & ~teeth] * 0.6 + np.array(CUT_MARK) * 0.4).astype(np.uint8)
            marked[teeth] = TEETH_MARK
            centre = lms[i][[13, 14, 61, 291], :2].mean(0)
            tiles += [label(crop_at(images[i], centre, 0.6 * unit[i], 192), f"f{i} gap {gap[i]:.3f}"),
                      label(crop_at(marked, centre, 0.6 * unit[i], 192), f"teeth {share:.2f}")]
        grid(tiles, 4, out / "mouth_open.png", tile=192)
        grid([label(crop_at(images[closed], lms[closed][[13, 14, 61, 291], :2].mean(0), 0.6 * unit[closed], 256),
                    f"f{closed} gap {gap[closed]:.4f}")], 1, out / "lips_closed.png", tile=256)
    if "blink" not in args.skip:
        shut, mid = int(np.nanargmin(eyes)), int(np.nanargmin(np.abs(eyes - np.nanmedian(eyes))))
        painted = paint_eyes_shut(images[mid], lms[mid])
        from engine.avatar.landmarks import face_mesh
        pts, _ = face_mesh(painted)
        floor = math.nan if pts is None else float(openness(pts.numpy().astype(np.float64)[None])[0] / eyes[mid])
        res.update({"blink_ratio": round(float(np.nanmin(eyes) / np.nanmedian(eyes)), 4),
                    "openness_median": round(float(np.nanmedian(eyes)), 4), "blinks": pm.count_blinks(eyes),
                    "blink_frame": shut, "blink_ratio_painted_shut": round(floor, 4)})
        tiles = [label(crop_at(images[i], lms[i][[33, 263], :2].mean(0), 0.8 * unit[i], 256), f"{what} f{i} {eyes[i]:.3f}")
                 for what, i in (("closed", shut), ("median", mid))]
        tiles.append(label(crop_at(painted, lms[mid][[33, 263], :2].mean(0), 0.8 * unit[mid], 256),
                           f"painted shut {floor * eyes[mid]:.3f}"))
        grid(tiles, 3, out / "eyes_closed.png", tile=256)
    return res


def poses(images: list[np.ndarray]) -> list[np.ndarray | None]:
    """mediapipe pose (complexity 1) per uint8 image -> [33, 4] (x, y pixels, z, visibility) or None. An image
    it finds no one in is read once more mirrored, the reading mirrored back (left and right swapped): on a white
    background it misses some people it finds in the mirror image (cameraman_grey in profile)."""
    from engine.avatar.landmarks import mediapipe_module, mirrored_back, quiet_native_logs
    found = []
    with quiet_native_logs(), mediapipe_module().solutions.pose.Pose(static_image_mode=True,
                                                                     model_complexity=1) as model:
        def read(img):
            h, w = img.shape[:2]
            res = model.process(np.ascontiguousarray(img)).pose_landmarks
            return None if res is None else np.array([[p.x * w, p.y * h, p.z * w, p.visibility]
                                                      for p in res.landmark])
        for img in images:
            p = read(img)
            if p is None and (p := read(img[:, ::-1])) is not None:
                p = mirrored_back(torch.from_numpy(p), img.shape[1]).numpy()
            found.append(p)
    return found


def gesture(avatar, args, wave: np.ndarray, front_render: np.ndarray | None, out: Path) -> dict:
    """"raise right hand": the right wrist above the right shoulder, the left arm unmoved (pose on the renders)."""
    from engine.runtime import AvatarEngine, EngineConfig
    seen = poses([front_render])[0] if front_render is not None else None
    if seen is None or (seen[[11, 12, 15, 16], 3] <= 0.5).any():
        return {"applicable": False}

    def run(command: str | None, window: int = 0):
        engine = AvatarEngine(avatar, EngineConfig(*frame_size(avatar, args.size), motion=args.motion))
        engine.push_audio(wave, 16000)
        engine.end_audio()
        for _ in range(5):
            engine.skip_frame()
        start = 5 + len(engine._queue)                   # frames already generated keep their motion
        window = engine.command(command) if command else window
        for _ in range(start - 5):
            engine.skip_frame()
        return [engine.next_frame().image for _ in range(min(window, engine.pending()))], start, window

    raised, start, window = run("raise right hand")
    base, _, _ = run(None, window)
    found = poses(raised)
    lift = [p[12, 1] - p[16, 1] if p is not None else -np.inf for p in found]
    i = int(np.argmax(lift))
    res = {"applicable": True, "window_frames": window, "command_frame": start, "pose_failed": sum(p is None for p in found)}
    ref = poses([base[i]])[0]
    if found[i] is None or ref is None:
        return {**res, "wrist_above_shoulder": None, "left_arm_moved": None}
    p, q = found[i], ref
    width = float(np.linalg.norm(q[11, :2] - q[12, :2]))
    moved = float(max(np.linalg.norm(p[j, :2] - q[j, :2]) for j in (11, 13, 15)) / width)
    res.update({"frame": start + i, "wrist_above_shoulder": bool(p[16, 1] < p[12, 1]),
                "wrist_above_without_command": bool(q[16, 1] < q[12, 1]),
                "wrist_lift_sw": round(float(lift[i]) / width, 3),                 # above the shoulder
                "wrist_raised_sw": round(float(q[16, 1] - p[16, 1]) / width, 3),   # above the frame without it
                "left_arm_moved": round(moved, 4)})
    tiles = [label(draw_arms(img, pts), text) for img, pts, text in
             ((base[i], q, f"no command f{start + i}"), (raised[i], p, f"raise right hand f{start + i}"))]
    grid(tiles, 2, out / "gesture.png", tile=raised[i].shape[1])
    return res


def draw_arms(img: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Pose points of the right arm (12, 14, 16: red) and the left (11, 13, 15: blue) drawn on a copy."""
    im = Image.fromarray(img)
    d = ImageDraw.Draw(im)
    for arm, colour in (((12, 14, 16), (255, 0, 0)), ((11, 13, 15), (0, 80, 255))):
        d.line([tuple(pts[j, :2]) for j in arm], fill=colour, width=3)
        for j in arm:
            x, y = pts[j, :2]
            d.ellipse((x - 4, y - 4, x + 4, y + 4), outline=colour, width=2)
    return np.asarray(im)


def crop_at(img: np.ndarray, centre: np.ndarray, half: float, tile: int) -> np.ndarray:
    """A square of side 2 half around centre, enlarged to tile x tile (nearest: the pixels stay visible)."""
    x, y = centre
    box = tuple(round(float(v)) for v in (x - half, y - half, x + half, y + half))
    return np.asarray(Image.fromarray(img).crop(box).resize((tile, tile), Image.NEAREST))


def label(img: np.ndarray, text: str) -> np.ndarray:
    im = Image.fromarray(img)
    d = ImageDraw.Draw(im)
    d.rectangle((0, 0, 7 * len(text) + 6, 14), fill=(255, 255, 255))
    d.text((3, 2), text, fill=(0, 0, 0))
    return np.asarray(im)


def grid(tiles: list[np.ndarray], cols: int, path: Path, tile: int) -> None:
    """The tiles (each resized to tile px wide, the first one's aspect) in rows of cols, written as PNG."""
    if not tiles:
        return
    rows, th = math.ceil(len(tiles) / cols), round(tile * tiles[0].shape[0] / tiles[0].shape[1])
    sheet = Image.new("RGB", (min(cols, len(tiles)) * tile, rows * th), "white")
    for k, t in enumerate(tiles):
        sheet.paste(Image.fromarray(t).resize((tile, th), Image.BILINEAR), ((k % cols) * tile, (k // cols) * th))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    WRITTEN.append(str(path))


def bars(fig: dict) -> dict:
    """{name: {value, bar, met}} for every figure of BARS present (met None when there is no value or bar)."""
    out = {}
    for name, (op, bar) in BARS.items():
        if name not in fig:
            continue
        v = fig[name]
        ok = None if v is None or op is None or (isinstance(v, float) and not math.isfinite(v)) else bool(
            v >= bar if op == ">=" else v <= bar if op == "<=" else v < bar if op == "<" else v == bar)
        out[name] = {"value": v, "bar": None if op is None else f"{op} {bar}", "met": ok}
    return out


def main() -> None:
    from cuda_ext._backend import load as load_kernels
    from engine.avatar.bundle import Avatar
    from engine.avatar.personalize import personalize

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", required=True)
    ap.add_argument("--avatar", help="load this bundle (made from --photo) instead of personalizing")
    ap.add_argument("--save-avatar", help="save the personalized avatar here")
    ap.add_argument("--out", help="pictures (default /tmp/person_bench/<photo stem>)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--motion", default="procedural", choices=["procedural", "learned"])
    ap.add_argument("--audio", help="speech file (default: the held-out clips)")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--skip", default="", help="comma-separated: orbit, mouth, blink, gesture")
    args = ap.parse_args()
    args.skip = {s for s in args.skip.split(",") if s}
    if args.skip - {"orbit", "mouth", "blink", "gesture"}:
        ap.error(f"--skip: unknown {sorted(args.skip - {'orbit', 'mouth', 'blink', 'gesture'})}")
    if args.size < 64 or args.size % 2:
        ap.error(f"--size: expected an even size >= 64, got {args.size}")
    out = Path(args.out or f"/tmp/person_bench/{Path(args.photo).stem}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fig = {"photo": Path(args.photo).name, "size": args.size, "motion": args.motion, "threads": torch.get_num_threads(),
           "load_avg": round(os.getloadavg()[0], 2)}                    # other work on the machine slows timings
    if args.avatar:
        avatar = Avatar.from_pretrained(args.avatar)
        if avatar.meta.get("photo") != Path(args.photo).name:
            print(f"warning: {args.avatar} was made from {avatar.meta.get('photo')}", file=sys.stderr)
    else:
        load_kernels()                                   # a first JIT build of the splatting kernels is not timed
        t = time.perf_counter()
        avatar = personalize(args.photo, progress=False)
        fig["personalize_s"] = round(time.perf_counter() - t, 1)
        if args.save_avatar:
            avatar.save_pretrained(args.save_avatar)
    fig["gaussians"] = len(avatar.gaussians)
    shown = front(avatar, args.photo)
    render = shown.pop("render", None)
    fig.update(shown)
    if "orbit" not in args.skip:
        fig.update(orbit(avatar, args.size, out))
    wave = speech(args.audio, args.seconds) if args.skip & {"mouth", "blink", "gesture"} != {"mouth", "blink",
                                                                                                 "gesture"} else None
    if not {"mouth", "blink"} <= args.skip:
        fig.update(talking(avatar, args, wave, out))
    if "gesture" not in args.skip:
        fig["gesture"] = gesture(avatar, args, wave, render, out)
        fig.update({k: fig["gesture"][k] for k in ("wrist_above_shoulder", "left_arm_moved") if k in fig["gesture"]})
    fig["bars"] = bars(fig)
    fig["files"] = WRITTEN
    fig["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(fig), flush=True)


if __name__ == "__main__":
    main()
