"""Tracks: 2-D pixel trajectories of the canonical slots through a teacher video (distill step 2).

Data path (docs/architecture.md): teachers -> teacher videos -> **tracks** -> fit4d. The slots' pixels in the reference photo
(the Avatar's control particles seen by the photo camera) are followed through the frames a teacher made from it:

    reference [H, W, 3] uint8, frames [T, H, W, 3] uint8, points [P, 2] px, names [P]
        -> Tracks(points [T, P, 2] px float32, valid [T, P] bool)

Pixels are mediapipe's: x right, y down, pixel centres at +0.5 (OpenCV's centres are at integers; we convert).
Options: TrackConfig (defaults in configs/tracks.yaml). Per frame t (t = -1 is the reference), `track`:

1. Chains: pyramidal Lucas-Kanade (cv2.calcOpticalFlowPyrLK on grayscale) from frame t-1 to t for the points
   valid at t-1, then back from t to t-1. The step is invalid when either status is 0, the round trip misses the
   start by more than fb_threshold_px, the matched windows differ by more than max_patch_error gray levels on
   average (occlusion, a tear, a wrong match), or the point leaves the image.
2. Anchors: each point the chain kept is refined by LK from the reference (started at the chained position,
   same checks), and takes the refined position when that is at most anchor_px away. Where the frame still looks
   like the reference this removes the chain's drift; where it does not (an open mouth) the checks fail or the
   jump is too long, and the chain stands.
3. Re-finds: a point invalid now (lost earlier, or just now) is sought by LK from the reference, started at its
   last known position, same checks. So a point comes back after an occlusion; until then it stays invalid and
   repeats its last known position.
4. Face slots ("face:i"; when use_landmarks and the reference shows a face): mediapipe's face mesh
   (engine.avatar.landmarks) on frame t gives a drift-free measurement m = points[i] + mesh_t[i] - mesh_ref[i].
   Fusion rule per face point, with d = m - LK:
     - LK invalid (lost and not re-found)             -> m, valid again;
     - |d| > reanchor_px (LK slipped, or drifted)    -> m: re-anchored;
     - otherwise                                     -> LK + landmark_weight * d * max(0, 1 - deadband_px / |d|):
       a complementary filter with a soft dead band. LK keeps its sub-pixel precision (the mesh jitters by about
       half a pixel), the mesh pulls a drifting LK point back (time constant about 1 / landmark_weight frames).
   A frame where the mesh finds no face, or a measurement outside the image, leaves the LK result as it is.
   Other slots (pose, hands) are LK only.

Known limits: LK is translational, so a window that rotates or scales picks up a small bias (about 0.1 px after
2 degrees and 2 %). A point within a few pixels of an occluder's edge can pass the checks about a pixel off in
that frame (step 2 pulls it back afterwards). The mesh is only as good as mediapipe: on the procedural teacher it
follows a dropping chin by about half the distance, so chin points whose LK fails err by up to ~5 px there.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from engine.avatar.particles import canonical_names
from engine.config import load_config

CONFIG_PATH = Path(__file__).resolve().parents[1] / "configs" / "tracks.yaml"


@dataclass
class TrackConfig:
    """Options of `track` (module docstring); `TrackConfig.from_yaml()` reads configs/tracks.yaml."""
    win_size: int = 21              # LK window, pixels (square)
    levels: int = 3                 # LK pyramid levels above the full image
    iterations: int = 30            # LK iterations per level ...
    epsilon: float = 0.01           # ... or until the update is below this many pixels
    fb_threshold_px: float = 1.0    # forward-backward round-trip error above which a step is invalid
    max_patch_error: float = 25.0   # mean |gray difference| (0..255) of the matched windows above which: invalid
    anchor_px: float = 2.0          # step 2: take the reference's LK refinement when it moves <= this; 0: off
    refind: bool = True             # seek invalid points from the reference (step 3)
    use_landmarks: bool = True      # fuse mediapipe face-mesh measurements into face slots (step 4)
    landmark_weight: float = 0.3    # complementary-filter pull toward the landmark measurement per frame, [0, 1]
    deadband_px: float = 0.5        # disagreements below this are landmark noise: no pull (a soft threshold)
    reanchor_px: float = 3.0        # LK and landmark disagreeing by more than this: take the landmark

    def check(self) -> "TrackConfig":
        rules = (("win_size", self.win_size >= 5, ">= 5"), ("levels", 0 <= self.levels <= 8, "in [0, 8]"),
                 ("iterations", self.iterations >= 1, ">= 1"), ("epsilon", self.epsilon > 0, "> 0"),
                 ("fb_threshold_px", self.fb_threshold_px > 0, "> 0"),
                 ("max_patch_error", self.max_patch_error > 0, "> 0"),
                 ("landmark_weight", 0.0 <= self.landmark_weight <= 1.0, "in [0, 1]"),
                 ("deadband_px", self.deadband_px >= 0, ">= 0"),
                 ("anchor_px", self.anchor_px >= 0, ">= 0"), ("reanchor_px", self.reanchor_px > 0, "> 0"))
        for key, ok, rule in rules:
            if not ok:
                raise ValueError(f"cfg: {key} must be {rule}, got {getattr(self, key)!r}")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path = CONFIG_PATH) -> "TrackConfig":
        return load_config(cls, path).check()


@dataclass
class Tracks:
    points: Tensor        # [T, P, 2] float32 pixels (centres at +0.5); an invalid point repeats its last position
    valid: Tensor         # [T, P] bool
    names: list[str]      # [P] canonical slot names


def _check_inputs(reference, frames, points, names) -> np.ndarray:
    for arg, a, dims in (("reference", reference, 3), ("frames", frames, 4)):
        if not isinstance(a, np.ndarray) or a.ndim != dims or a.shape[-1] != 3 or a.dtype != np.uint8:
            got = f"{type(a).__name__} {getattr(a, 'dtype', '')} {list(getattr(a, 'shape', []))}"
            raise ValueError(f"{arg}: expected a uint8 numpy array [{'T, ' * (dims == 4)}H, W, 3], got {got}")
    if frames.shape[1:] != reference.shape or frames.shape[0] == 0:
        raise ValueError(f"frames: expected [T >= 1, {', '.join(map(str, reference.shape))}] like reference, "
                         f"got {list(frames.shape)}")
    pts = points.detach().cpu().double().numpy() if isinstance(points, Tensor) else np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points: expected [P, 2] pixels, got {list(pts.shape)}")
    if not np.isfinite(pts).all():
        raise ValueError("points: must be finite, got NaN or inf")
    if not isinstance(names, (list, tuple)) or len(names) != len(pts):
        raise ValueError(f"names: expected a list of {len(pts)} slot names (one per point), got "
                         f"{type(names).__name__} of {len(names) if hasattr(names, '__len__') else '?'}")
    unknown = sorted({str(n) for n in names} - set(canonical_names()))
    if unknown:
        raise ValueError(f"names: not canonical slots (engine.avatar.particles): {unknown[:5]}")
    return pts


def _inside(p: np.ndarray, H: int, W: int) -> np.ndarray:
    """p [..., 2] OpenCV pixels (centres at integers) -> inside the image [...]."""
    return (p[..., 0] >= -0.5) & (p[..., 0] <= W - 0.5) & (p[..., 1] >= -0.5) & (p[..., 1] <= H - 0.5)


def _lk_checked(lk: dict, cfg: TrackConfig, prev, nxt, start: np.ndarray, guess: np.ndarray | None = None):
    """LK from `prev` to `nxt` (grayscale) for start [n, 2] (from guess [n, 2] if given), and back again
    -> (end [n, 2], ok [n]): both statuses 1, a round-trip error <= fb_threshold_px and a patch difference
    <= max_patch_error."""
    if len(start) == 0:
        return start.copy(), np.zeros(0, bool)
    p0 = start.astype(np.float32).reshape(-1, 1, 2)
    flags = 0 if guess is None else cv2.OPTFLOW_USE_INITIAL_FLOW
    p1 = None if guess is None else guess.astype(np.float32).reshape(-1, 1, 2)
    p1, st1, err = cv2.calcOpticalFlowPyrLK(prev, nxt, p0, p1, flags=flags, **lk)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(nxt, prev, p1, None, **lk)
    fb = np.linalg.norm(back - p0, axis=-1).ravel()
    ok = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb <= cfg.fb_threshold_px) & (err.ravel() <= cfg.max_patch_error)
    return p1.reshape(-1, 2).astype(np.float64), ok


def _mesh(rgb: np.ndarray) -> np.ndarray | None:
    """Face-mesh x, y [478, 2] of the largest face in rgb [H, W, 3] uint8 (OpenCV pixels), or None."""
    from engine.avatar.landmarks import face_mesh
    face, _ = face_mesh(np.ascontiguousarray(rgb))
    return None if face is None else face[:, :2].double().numpy() - 0.5


def track(reference: np.ndarray, frames: np.ndarray, points, names: list[str], cfg: TrackConfig = TrackConfig(),
          progress: bool = False) -> Tracks:
    """reference [H, W, 3] uint8, frames [T, H, W, 3] uint8, points [P, 2] (array or tensor: pixels in reference,
    centres at +0.5), names [P] canonical slot names (repeats allowed) -> Tracks(points [T, P, 2], valid [T, P]).
    Method: the module docstring. ValueError names a bad argument."""
    # inputs
    start = _check_inputs(reference, frames, points, names) - 0.5                 # OpenCV pixels
    cfg = cfg.check()
    T, H, W = frames.shape[:3]
    P = len(start)
    win = (cfg.win_size, cfg.win_size)
    lk = dict(winSize=win, maxLevel=cfg.levels,
              criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, cfg.iterations, cfg.epsilon))

    def to_gray(rgb):
        return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)

    def flow(prev, nxt, p, guess=None):
        return _lk_checked(lk, cfg, prev, nxt, p, guess)

    # the reference's face mesh, for the face slots
    face_ids = np.asarray([int(n[5:]) if n.startswith("face:") else -1 for n in names])
    face_rows = np.flatnonzero(face_ids >= 0)
    mesh_ref = _mesh(reference) if cfg.use_landmarks and len(face_rows) else None
    # frame by frame
    ref_gray = to_gray(reference)
    prev_gray, cur, ok = ref_gray, start.copy(), _inside(start, H, W)
    out_pts, out_valid = np.empty((T, P, 2)), np.empty((T, P), bool)
    steps = range(T)
    if progress:
        from tqdm import tqdm
        steps = tqdm(steps, desc="tracking", unit="frame")
    for t in steps:
        gray = to_gray(frames[t])
        # the face mesh's measurement m [P, 2] (NaN: none)
        meas = np.full((P, 2), np.nan)
        mesh = _mesh(frames[t]) if mesh_ref is not None else None
        if mesh is not None:
            meas[face_rows] = start[face_rows] + mesh[face_ids[face_rows]] - mesh_ref[face_ids[face_rows]]
            meas[~_inside(meas, H, W)] = np.nan
        has = np.isfinite(meas[:, 0])
        # 1. chain from t-1, checked
        nxt, good = cur.copy(), np.zeros(P, bool)
        live = np.flatnonzero(ok)
        nxt[live], good[live] = flow(prev_gray, gray, cur[live])
        # 2. anchor to the reference
        live = np.flatnonzero(good)
        if cfg.anchor_px > 0 and len(live) and t > 0:
            fine_pts, fine = flow(ref_gray, gray, start[live], guess=nxt[live])
            fine &= np.linalg.norm(fine_pts - nxt[live], axis=1) <= cfg.anchor_px
            nxt[live[fine]] = fine_pts[fine]
        # 3. re-find lost points from the reference
        lost = np.flatnonzero(~good)
        if cfg.refind and len(lost) and t > 0:
            found, fine = flow(ref_gray, gray, start[lost], guess=cur[lost])
            nxt[lost[fine]], good[lost[fine]] = found[fine], True
        good &= _inside(nxt, H, W)
        nxt[~good] = cur[~good]
        # 4. fuse the face mesh
        rows = np.flatnonzero(has)
        d = meas[rows] - nxt[rows]
        size = np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
        take = ~good[rows, None] | (size > cfg.reanchor_px)
        pull = cfg.landmark_weight * np.clip(1.0 - cfg.deadband_px / size, 0.0, 1.0)
        nxt[rows] += np.where(take, 1.0, pull) * d
        good[rows] = True
        out_pts[t], out_valid[t] = nxt, good
        prev_gray, cur, ok = gray, nxt, good
    return Tracks(torch.from_numpy(out_pts + 0.5).float(), torch.from_numpy(out_valid), list(names))
