"""The offline procedural teacher: the photo itself, made to talk by a 2-D triangle-mesh warp.

No network, no weights: the motion is engine.motion.procedural's rule-based rig, and the pixels are the photo's own,
moved piecewise-affinely. `generate(reference_image, audio)` runs five steps:

1. Landmarks of the photo (mediapipe through engine.avatar.landmarks; cached per image). The canonical slots the photo
   shows (face points, the pose joints it shows, hands) are the rest positions, in pixels; one face unit is the
   outer-eye-corner distance (engine.avatar.particles.motion_scale).
2. Motion: engine.motion.procedural.ProceduralMotion on engine.audio.features.audio_features -> [T, K_c, 3] in face units. The
   image takes its x, y (pixels = face units * the unit); z is dropped.
3. Warp: a Delaunay triangle mesh (cv2.Subdiv2D) over the moving slots and static anchors: the image border, a
   ring around the head (the face oval scaled about its centre) and a coarse grid over the rest of the image
   away from every moving point, so the background stays put. The mesh is triangulated once, at an open-mouth
   pose, so that no triangle spans the lips. Every frame maps each deformed triangle back to its rest triangle
   (backward, piecewise affine): triangle ids are rasterised with cv2.fillConvexPoly, source coordinates come
   from each triangle's affine map, and cv2.remap samples the photo (bilinear).
4. Where a warp would smear: the mouth and the eyes.
   - Mouth: between the deformed inner lips (engine.avatar.mouth UPPER_INNER / LOWER_INNER) the warp would stretch
     the lips and teeth. Instead, column by column, a band as tall as the photo's own lip gap is kept: its
     upper part (teeth_share of it, the upper teeth) moves with the upper lip, the rest with the lower lip,
     and whatever the mouth opens beyond that is the dark mouth interior (engine.avatar.mouth.INTERIOR_RGB, shaded
     top to bottom), with feathered edges. Silence, or the photo's own gap, leaves the mouth as it is.
   - Eyes: the blink is taken out of the mesh (the eye stays rigid with the head, never squashed) and drawn
     as a lid over it: column by column, the photo's strip of skin just above the eye is stretched down to the
     lid's edge, its lashes carried unstretched at the edge, feathered there. A closed eye is lid skin.
5. Frames [T, H, W, 3] uint8 at 25 fps, T = S // 640. The head moves only by the rig's nod and sway (a few
   degrees about a pivot below the chin), so there is no drift and the identity is the photo's.

Coordinates: landmarks are in pixels with pixel centres at +0.5 (mediapipe); the mesh works in index
coordinates (pixel centres at integers, as cv2.remap wants), i.e. landmark - 0.5.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from distill.teachers.base import Teacher, check_inputs
from engine.audio.features import audio_features
from engine.avatar.landmarks import Landmarks, detect
from engine.avatar.mouth import INTERIOR_RGB, LOWER_INNER, OUTER_LIPS, UPPER_INNER
from engine.avatar.particles import (canonical_names, canonical_slots, face_rows, head_roll, level_face,
                                     motion_scale, turn_rows)
from engine.avatar.regions import LIPS, face_index_sets
from engine.config import from_dict, load_config
from engine.motion.procedural import ProceduralConfig, ProceduralMotion
from engine.motion.visemes import marks_to_weights

CONFIG_PATH = Path(__file__).resolve().parents[2] / "configs" / "teachers" / "procedural.yaml"
# mediapipe face-mesh eye contours (its FACEMESH_RIGHT_EYE / FACEMESH_LEFT_EYE tables): (upper, lower) lid,
# each from corner to corner
EYE_LIDS = (((33, 246, 161, 160, 159, 158, 157, 173, 133), (33, 7, 163, 144, 145, 153, 154, 155, 133)),
            ((263, 466, 388, 387, 386, 385, 384, 398, 362), (263, 249, 390, 373, 374, 380, 381, 382, 362)))
IRIS_FIRST = 468          # face-mesh points 468.. are the irises: inside the eye, under the lids, not in the mesh
LID_SKIN = 0.15           # a closing lid is the photo's strip of this many face units above the eye, stretched,
LASH = 0.04               # ... of which the lowest this many (the lashes) are carried unstretched
LID_OVERSHOOT = 1.25      # lid drop gain, so that engine.motion.procedural's full blink closes the eye
STATIC_GAP = 0.6          # grid anchors keep at least this far (face units) from every moving point
RING_GAP = 0.25           # head-ring anchors keep at least this far from every moving point
_LANDMARK_CACHE: OrderedDict[str, Landmarks] = OrderedDict()
_CACHE_SIZE = 8


@dataclass
class ProceduralTeacherConfig(ProceduralConfig):
    """engine.motion.procedural.ProceduralConfig's motion options (passed through), and the photo warp's own.
    The head keeps the calmer sway and nods, and no saccades, that the shipped models were distilled with
    (docs/distillation.md); the live rig's own defaults are livelier (issue 19)."""
    sway_deg: float = 2.5
    nod_deg: float = 4.0
    saccade: float = 0.0
    max_side: int = 512          # the photo is downscaled to at most this many pixels on its longer side
    ring_scale: float = 1.5      # static anchors around the head: the face oval scaled by this about its centre
    teeth_share: float = 0.5     # share of the photo's own lip gap (upper teeth) that stays with the upper lip
    feather: float = 0.03        # soft edge of the mouth interior, face units

    def motion(self) -> ProceduralConfig:
        return ProceduralConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ProceduralConfig)})

    def check(self) -> "ProceduralTeacherConfig":
        rules = (("max_side", self.max_side >= 32, ">= 32"), ("ring_scale", self.ring_scale > 1.05, "> 1.05"),
                 ("teeth_share", 0.0 <= self.teeth_share <= 1.0, "in [0, 1]"), ("feather", self.feather >= 0, ">= 0"))
        for key, ok, rule in rules:
            if not ok:
                raise ValueError(f"procedural teacher: {key} must be {rule}, got {getattr(self, key)!r}")
        return self


# ------------------------------------------------------------------------------------------ landmarks
def _landmarks(image: np.ndarray) -> Landmarks:
    """Landmarks of image [H, W, 3] uint8, cached by its bytes; ValueError when the photo shows no face."""
    key = hashlib.sha1(image.tobytes()).hexdigest() + str(image.shape)
    if key in _LANDMARK_CACHE:
        _LANDMARK_CACHE.move_to_end(key)
        return _LANDMARK_CACHE[key]
    try:
        lm = detect(torch.from_numpy(image.astype(np.float32) / 255.0))
    except ValueError as e:
        raise ValueError(f"reference_image: no face found in the photo ({e})") from None
    if lm.face is None:
        raise ValueError("reference_image: no face found in the photo (the procedural teacher animates a face)")
    _LANDMARK_CACHE[key] = lm
    while len(_LANDMARK_CACHE) > _CACHE_SIZE:
        _LANDMARK_CACHE.popitem(last=False)
    return lm


def _rest_slots(lm: Landmarks, H: int, W: int) -> tuple[Tensor, Tensor]:
    """Canonical slots the photo shows -> (rest [K_c, 3] in pixels, present [K_c] bool). Pose joints count when
    visible and inside the image (as engine.avatar.personalize does)."""
    names = canonical_names()
    source = {"face": lm.face, "pose": lm.pose, "hand_left": lm.left_hand, "hand_right": lm.right_hand}
    rest = torch.zeros(len(names), 3)
    present = torch.zeros(len(names), dtype=torch.bool)
    for k, name in enumerate(names):
        kind, i = name.split(":")
        points = source[kind]
        if points is None:
            continue
        p = points[int(i)]
        if kind == "pose" and not (p[3] > 0.5 and 0 <= p[0] < W and 0 <= p[1] < H):
            continue
        rest[k], present[k] = p[:3].float(), True
    return rest, present


# ------------------------------------------------------------------------------------------ mesh helpers
def _delaunay(points: np.ndarray, W: int, H: int) -> np.ndarray:
    """Delaunay triangles [F, 3] (vertex ids) of points [V, 2], all inside (-4, -4)..(W + 4, H + 4)."""
    subdiv = cv2.Subdiv2D((-4, -4, W + 8, H + 8))
    pts = points.astype(np.float32)
    index: dict[tuple[float, float], int] = {}
    for i, (x, y) in enumerate(pts):
        index.setdefault((float(x), float(y)), i)
    subdiv.insert([(float(x), float(y)) for x, y in pts])
    triangles = []
    for t in subdiv.getTriangleList().reshape(-1, 3, 2):
        ids = [index.get((float(x), float(y))) for x, y in t]
        if None not in ids:                               # a triangle on subdiv's virtual outer vertices
            triangles.append(ids)
    return np.asarray(triangles, dtype=np.int64).reshape(-1, 3)


def _affines(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Per triangle the affine map M [F, 2, 3] with src = M @ [dst; 1], for dst, src [F, 3, 2]. A degenerate
    dst triangle (covers no pixel) gets the translation of its centroid."""
    D = np.concatenate([dst, np.ones(dst.shape[:2] + (1,))], axis=2).transpose(0, 2, 1)   # [F, 3, 3], columns
    det = np.linalg.det(D)
    ok = np.abs(det) > 1e-9
    M = np.zeros((dst.shape[0], 2, 3))
    M[:, 0, 0] = M[:, 1, 1] = 1.0
    M[:, :, 2] = src.mean(1) - dst.mean(1)
    if ok.any():
        M[ok] = src[ok].transpose(0, 2, 1) @ np.linalg.inv(D[ok])
    return M


def _signed_area(tri: np.ndarray) -> np.ndarray:
    """Twice the signed area [F] of triangles [F, 3, 2]."""
    (a, b, c) = tri[:, 0], tri[:, 1], tri[:, 2]
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])


def _interp(x: np.ndarray, points: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Piecewise-linear values at x along a contour: points [n, 2] (sorted here by their x), values [n]."""
    order = np.argsort(points[:, 0], kind="stable")
    return np.interp(x, points[order, 0], values[order])


# ------------------------------------------------------------------------------------------ the rig
class PhotoRig:
    """One photo's warp mesh. `vertices` [V, 2] are rest positions in index coordinates: the first P are the
    canonical slots `keep` [P] (present, inside the image, no iris), the rest static anchors; `triangles` [F, 3].
    `render(displacement [K_c, 3] face units) -> [H, W, 3] uint8`; `render_clip([T, K_c, 3]) -> [T, H, W, 3]`."""

    def __init__(self, image: np.ndarray, lm: Landmarks, cfg: ProceduralTeacherConfig):
        self.image, self.cfg, self.landmarks = image, cfg, lm
        H, W = image.shape[:2]
        names = canonical_names()
        rest_px, self.present = _rest_slots(lm, H, W)
        shown = self.present.nonzero().flatten().tolist()
        self.unit = motion_scale(rest_px[self.present], [names[i] for i in shown])
        # [K_c, 3], ProceduralMotion's rest: the face level (engine.avatar.particles), its motion turned back by roll
        self.rest_units = level_face(rest_px, names) / self.unit
        self.roll = head_roll(rest_px, names)
        # 1. moving vertices: one per distinct rest position inside the image. Not in the mesh: the irises (inside
        #    the eyes, under the lids) and the face-mesh points on the lips that engine.motion.procedural does not count
        #    as lips (it would move them apart from the lip contours around them and fold the mesh there)
        lips = cv2.convexHull((lm.face[list(OUTER_LIPS), :2].numpy() - 0.5).astype(np.float32))
        regions = [r for _, r in canonical_slots()]
        keep, seen, self.slot_vertex = [], {}, np.full(len(names), -1)
        for k in shown:
            x, y = float(rest_px[k, 0]) - 0.5, float(rest_px[k, 1]) - 0.5
            face_point = int(names[k][5:]) if names[k].startswith("face:") else -1
            on_lips = face_point >= 0 and regions[k] != LIPS and cv2.pointPolygonTest(lips, (x, y), True) > -1.0
            if face_point >= IRIS_FIRST or on_lips or not (0 <= x <= W - 1 and 0 <= y <= H - 1):
                continue
            at = seen.setdefault((round(x, 2), round(y, 2)), len(keep))
            if at == len(keep):
                keep.append(k)
            self.slot_vertex[k] = at
        self.keep = np.asarray(keep, dtype=np.int64)
        self.face_keep = face_rows(names)[self.keep]                 # [P] bool: moving vertices on the face
        slot_points = rest_px[self.keep, :2].double().numpy() - 0.5          # [P, 2]
        # 2. contours (vertex ids): the inner lips, and each eye's upper and lower lid
        where = {n: i for i, n in enumerate(names)}
        def ids(points):
            v = [int(self.slot_vertex[where[f"face:{i}"]]) for i in points]
            return None if min(v) < 0 else np.asarray(v)
        self.mouth = (ids(UPPER_INNER), ids(LOWER_INNER))
        self.eyes = [(ids(up), ids(low)) for up, low in EYE_LIDS]
        self.eyes = [(u, l) for u, l in self.eyes if u is not None and l is not None]
        # 3. static anchors
        self.vertices = np.concatenate([slot_points, self._anchors(slot_points, lm, W, H)])
        # 4. the mesh, triangulated with the mouth open so that no triangle spans the lips
        opened = self._open_pose()
        topology = self.vertices.copy()
        topology[:len(keep)] = np.clip(topology[:len(keep)] + opened, [-0.5, -0.5], [W - 0.5, H - 0.5])
        self.triangles = _delaunay(topology, W, H)
        self.rest_sign = np.sign(_signed_area(self.vertices[self.triangles]))
        self.gx, self.gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
        self._ids = np.empty((H, W), np.int32)

    # -- construction ----------------------------------------------------------------------------------
    def _anchors(self, moving: np.ndarray, lm: Landmarks, W: int, H: int) -> np.ndarray:
        """Static points [Q, 2]: the border (just outside the pixels), a ring around the head, and a grid over
        the image away from every moving point and outside the head ring."""
        def far(points, gap):
            if len(points) == 0:
                return points
            d = np.sqrt(((points[:, None, :] - moving[None]) ** 2).sum(-1)).min(1)
            return points[d >= gap * self.unit]
        n = max(4, round(max(W, H) / 48))
        xs, ys = np.linspace(-1.0, W, n + 1), np.linspace(-1.0, H, n + 1)
        border = np.concatenate([np.stack([xs, np.full_like(xs, -1.0)], 1), np.stack([xs, np.full_like(xs, H)], 1),
                                 np.stack([np.full_like(ys[1:-1], -1.0), ys[1:-1]], 1),
                                 np.stack([np.full_like(ys[1:-1], W), ys[1:-1]], 1)])
        oval = lm.face[face_index_sets()["oval"], :2].double().numpy() - 0.5
        centre = oval.mean(0)
        ring_all = centre + self.cfg.ring_scale * (oval - centre)
        inside = (ring_all[:, 0] >= 0) & (ring_all[:, 0] <= W - 1) & (ring_all[:, 1] >= 0) & (ring_all[:, 1] <= H - 1)
        ring = far(ring_all[inside], RING_GAP)
        hull = cv2.convexHull(ring_all.astype(np.float32))
        step = max(0.75 * self.unit, max(W, H) / 16)
        gxs, gys = np.meshgrid(np.arange(step / 2, W - 1, step), np.arange(step / 2, H - 1, step))
        grid = np.stack([gxs.ravel(), gys.ravel()], 1)
        grid = np.asarray([p for p in grid if cv2.pointPolygonTest(hull, (float(p[0]), float(p[1])), False) < 0])
        return np.concatenate([border, ring, far(grid.reshape(-1, 2), STATIC_GAP)])

    def _open_pose(self) -> np.ndarray:
        """Moving-vertex displacement [P, 2] (pixels) of a wide-open mouth and nothing else."""
        cfg = dataclasses.replace(self.cfg.motion(), sway_deg=0.0, nod_deg=0.0, breath=0.0, gesture=0.0,
                                  blink_every_s=1e12, jaw_open=max(self.cfg.jaw_open, 0.3))
        loud = ProceduralMotion(self.rest_units, self.present, cfg)(torch.zeros(8, 80), torch.ones(8))
        return self._pixels(loud[-1])

    def _pixels(self, displacement: Tensor) -> np.ndarray:
        """displacement [..., K_c, 3] face units -> moving vertices' [..., P, 2] pixels (x, y; z dropped)."""
        d = turn_rows(displacement[..., self.keep, :], self.face_keep, self.roll)   # the face turns with the head
        return d[..., :2].double().numpy() * self.unit

    # -- rendering -------------------------------------------------------------------------------------
    def render(self, displacement: Tensor) -> np.ndarray:
        """displacement [K_c, 3] (face units, one frame of engine.motion.procedural) -> frame [H, W, 3] uint8."""
        K = len(self.slot_vertex)
        if displacement.shape != (K, 3):
            raise ValueError(f"displacement: expected [{K}, 3], got {list(displacement.shape)}")
        return self._render(self._pixels(displacement))

    def render_clip(self, motion: Tensor) -> np.ndarray:
        """motion [T, K_c, 3] (face units) -> frames [T, H, W, 3] uint8."""
        K = len(self.slot_vertex)
        if motion.dim() != 3 or motion.shape[1:] != (K, 3):
            raise ValueError(f"motion: expected [T, {K}, 3], got {list(motion.shape)}")
        d = self._pixels(motion)
        frames = np.empty((motion.shape[0],) + self.image.shape, np.uint8)
        for t in range(motion.shape[0]):
            frames[t] = self._render(d[t])
        return frames

    def _render(self, d: np.ndarray) -> np.ndarray:
        V = self.vertices.copy()
        V[:len(self.keep)] += d
        lids = self._lids(V)
        map_x, map_y = self._maps(V)
        out = cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        for (upper, lower), edge in zip(self.eyes, lids):
            self._eyelid(out, V, upper, lower, edge)
        if self.mouth[0] is not None and self.mouth[1] is not None:
            self._mouth(out, V)
        return out

    def _maps(self, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Backward maps [H, W] float32: for each output pixel, where in the photo it comes from."""
        map_x, map_y = self.gx.copy(), self.gy.copy()
        moved = np.abs(V - self.vertices).max(1) > 1e-6
        live = np.flatnonzero(moved[self.triangles].any(1))
        if live.size == 0:
            return map_x, map_y
        # folded triangles first, so that where a fold overlaps its neighbours, the unfolded ones win
        live = live[np.argsort(_signed_area(V[self.triangles[live]]) * self.rest_sign[live] > 0, kind="stable")]
        tri = self.triangles[live]
        A = _affines(V[tri], self.vertices[tri]).astype(np.float32)          # deformed -> rest
        fixed = np.round(V[tri] * 16).astype(np.int32)                       # 4 fractional bits
        ids = self._ids
        ids.fill(-1)
        for f in range(len(tri)):
            cv2.fillConvexPoly(ids, fixed[f], int(f), cv2.LINE_8, 4)
        H, W = ids.shape
        lo, hi = V[tri].reshape(-1, 2).min(0), V[tri].reshape(-1, 2).max(0)
        x0, y0 = max(int(math.floor(lo[0])) - 1, 0), max(int(math.floor(lo[1])) - 1, 0)
        x1, y1 = min(int(math.ceil(hi[0])) + 2, W), min(int(math.ceil(hi[1])) + 2, H)
        sub = ids[y0:y1, x0:x1]
        hit = sub >= 0
        a = A[sub[hit]]
        X, Y = self.gx[y0:y1, x0:x1][hit], self.gy[y0:y1, x0:x1][hit]
        map_x[y0:y1, x0:x1][hit] = a[:, 0, 0] * X + a[:, 0, 1] * Y + a[:, 0, 2]
        map_y[y0:y1, x0:x1][hit] = a[:, 1, 0] * X + a[:, 1, 1] * Y + a[:, 1, 2]
        return map_x, map_y

    def _lids(self, V: np.ndarray) -> list[np.ndarray]:
        """Take the blink out of the mesh: each upper lid's inner points go back to where the head alone carries
        them (the lower lid's displacement), so the eye itself stays rigid. -> per eye the lid's edge y [9] for
        the upper contour: a drop (relative to the lower lid) LID_OVERSHOOT times as far (engine.motion.procedural's
        lids stop a little short of the lower lid at a full blink), stopping on the lower lid."""
        R, edges, heads = self.vertices, [], []
        for upper, lower in self.eyes:
            head = R[upper, 1] + _interp(V[upper, 0], V[lower], V[lower, 1] - R[lower, 1])
            low_y = _interp(V[upper, 0], V[lower], V[lower, 1])
            drop = V[upper, 1] - head
            drop[[0, -1]] = 0.0                                              # corners belong to both lids
            edges.append(np.where(drop > 1e-6, np.maximum(np.minimum(head + LID_OVERSHOOT * drop, low_y), head),
                                  V[upper, 1]))
            heads.append(np.where(drop > 1e-6, head, V[upper, 1]))
        for (upper, _), head in zip(self.eyes, heads):
            V[upper, 1] = head
        return edges

    def _band(self, upper: np.ndarray, lower: np.ndarray, V: np.ndarray, pad: int):
        """The bounding box of two contours (pixels, clipped) -> (x0, y0, columns xs [w], rows ys [h, 1])."""
        H, W = self.image.shape[:2]
        pts = V[np.concatenate([upper, lower])]
        x0, x1 = max(int(math.floor(pts[:, 0].min())), 0), min(int(math.ceil(pts[:, 0].max())) + 1, W)
        y0, y1 = max(int(math.floor(pts[:, 1].min())) - pad, 0), min(int(math.ceil(pts[:, 1].max())) + pad + 1, H)
        if x1 <= x0 or y1 <= y0:
            return None
        return x0, y0, np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64)[:, None]

    def _eyelid(self, out: np.ndarray, V: np.ndarray, upper: np.ndarray, lower: np.ndarray, edge: np.ndarray):
        """A closing lid, drawn over the rigid eye: column by column, the photo's strip above the lid (LID_SKIN
        face units of skin, then LASH of lashes) is moved with the head and stretched down to the lid's edge;
        the lashes are carried unstretched, the skin above them stretches."""
        R = self.vertices
        if (edge - V[upper, 1]).max() < 0.05:
            return
        skin, lash = LID_SKIN * self.unit, LASH * self.unit
        H, W = self.image.shape[:2]
        x0, x1 = max(int(math.floor(V[upper, 0].min())), 0), min(int(math.ceil(V[upper, 0].max())) + 1, W)
        y0 = max(int(math.floor(V[upper, 1].min() - skin)) - 1, 0)
        y1 = min(int(math.ceil(edge.max())) + 2, H)
        if x1 <= x0 or y1 <= y0:
            return
        xs, ys = np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64)[:, None]
        contour = np.stack([V[upper, 0], edge], 1)
        top = _interp(xs, V[upper], V[upper, 1]) - skin                    # where the stretched strip starts
        bottom = _interp(xs, contour, edge)                                  # the lid's edge
        dx = _interp(xs, V[lower], V[lower, 0] - R[lower, 0])                # the head's motion
        dy = _interp(xs, V[lower], V[lower, 1] - R[lower, 1])
        stretch = (skin - lash) / np.maximum(bottom - lash - top, 1e-3)
        rows = np.where(ys >= bottom - lash, ys - (bottom - top - skin), top + (ys - top) * stretch)
        map_x = np.broadcast_to(xs - dx, rows.shape).astype(np.float32)
        map_y = (rows - dy).astype(np.float32)
        inside = (xs > V[upper, 0].min()) & (xs < V[upper, 0].max()) & (bottom - top > skin + 0.05)
        alpha = (ys >= top) * np.clip(bottom - ys + 0.5, 0, 1) * inside
        if alpha.any():
            self._blend(out, x0, y0, map_x, map_y, alpha)

    def _mouth(self, out: np.ndarray, V: np.ndarray) -> None:
        """Teeth bands from the photo's own lip gap, each with its lip, and the dark interior where the lips
        part further."""
        upper, lower = self.mouth
        R = self.vertices
        box = self._band(upper, lower, V, 2)
        if box is None:
            return
        x0, y0, xs, ys = box
        (dl, dr), (rl, rr) = (V[upper[0], 0], V[upper[-1], 0]), (R[upper[0], 0], R[upper[-1], 0])
        src_x = rl + (xs - dl) / (dr - dl if abs(dr - dl) > 1e-6 else 1e-6) * (rr - rl)   # column in the photo
        yu, yl = _interp(xs, V[upper], V[upper, 1]), _interp(xs, V[lower], V[lower, 1])
        ryu, ryl = _interp(src_x, R[upper], R[upper, 1]), _interp(src_x, R[lower], R[lower, 1])
        gap = np.maximum(ryl - ryu, 0.0)
        grow = (yl - yu) - gap                                                 # opening beyond the photo's
        cols = (xs > min(dl, dr)) & (xs < max(dl, dr)) & (grow > 0)
        if not cols.any() or grow[cols].max() < 0.3:
            return
        band_u = self.cfg.teeth_share * gap
        band_l = gap - band_u
        inside = cols & (ys >= yu) & (ys <= yl)
        map_y = np.where(ys - yu <= band_u, ryu + (ys - yu), np.where(yl - ys <= band_l, ryl - (yl - ys), ryu + band_u))
        map_x = np.broadcast_to(src_x, map_y.shape)
        self._blend(out, x0, y0, map_x.astype(np.float32), map_y.astype(np.float32), inside.astype(np.float64))
        # the interior: between the bands, shaded darker under the upper teeth, feathered
        feather = max(self.cfg.feather * self.unit, 0.5)
        top, bottom = yu + band_u, yl - band_l
        dark = np.clip((ys - top) / feather + 0.5, 0, 1) * np.clip((bottom - ys) / feather + 0.5, 0, 1) * inside
        if not dark.any():
            return
        depth = np.clip((ys - top) / np.maximum(bottom - top, 1e-3), 0, 1)
        colour = np.asarray(INTERIOR_RGB, np.float64) * 255.0 * (0.65 + 0.35 * depth)[..., None]
        h, w = dark.shape
        region = out[y0:y0 + h, x0:x0 + w].astype(np.float64)
        region += dark[..., None] * (colour - region)
        out[y0:y0 + h, x0:x0 + w] = np.clip(region + 0.5, 0, 255).astype(np.uint8)

    def _blend(self, out, x0, y0, map_x, map_y, alpha) -> None:
        """out[box] = lerp(out[box], photo sampled at (map_x, map_y), alpha); all [h, w]."""
        patch = cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        h, w = alpha.shape
        region = out[y0:y0 + h, x0:x0 + w].astype(np.float64)
        region += alpha[..., None] * (patch - region)
        out[y0:y0 + h, x0:x0 + w] = np.clip(region + 0.5, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------ the teacher
def _downscale(image: np.ndarray, max_side: int) -> np.ndarray:
    H, W = image.shape[:2]
    if max(H, W) <= max_side:
        return np.ascontiguousarray(image)
    s = max_side / max(H, W)
    size = (max(1, round(W * s)), max(1, round(H * s)))
    return np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))


class ProceduralTeacher(Teacher):
    """The photo made to talk by engine.motion.procedural's rig and a triangle-mesh warp (module docstring).
    Options: ProceduralTeacherConfig's keys (strict), e.g. ProceduralTeacher(max_side=256, jaw_open=0.25)."""
    name = "procedural"

    is_diffusion = False

    def __init__(self, **options):
        self.config = from_dict(ProceduralTeacherConfig, options, "procedural teacher options").check()

    @classmethod
    def from_yaml(cls, path: str | Path = CONFIG_PATH) -> "ProceduralTeacher":
        return cls(**dataclasses.asdict(load_config(ProceduralTeacherConfig, path)))

    def prepare(self, reference_image) -> PhotoRig:
        """reference_image [H, W, 3] (uint8, or float in [0, 1]) -> its PhotoRig, at most max_side pixels."""
        image, _ = check_inputs(reference_image, torch.zeros(640))          # the image's checks only
        image = _downscale(image, self.config.max_side)
        return PhotoRig(image, _landmarks(image), self.config)

    def generate(self, reference_image, audio: Tensor, hand_poses: Tensor | None = None, seed: int = 0,
                 phonemes=None, alphabet: str = "espeak") -> np.ndarray:
        """reference_image [H, W, 3], audio [S] (16 kHz mono) -> frames [T, H', W', 3] uint8 at 25 fps,
        T = S // 640, H' x W' the photo downscaled to max_side. hand_poses is ignored: the rig makes its own
        beat gestures. phonemes: the audio's phoneme timeline [(start_s, end_s, symbol)] in `alphabet`
        (engine/motion/visemes.py; distill/phonemes.py gives espeak-ng's): with it the lips shut on p b m, round
        and spread (the phonetic teacher); without, they follow loudness only. The same inputs and seed give the
        same frames."""
        # 1. inputs
        image, audio = check_inputs(reference_image, audio)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed: expected an int, got {seed!r}")
        # 2. the photo's landmarks and mesh
        image = _downscale(image, self.config.max_side)
        rig = PhotoRig(image, _landmarks(image), self.config)
        # 3. motion of the canonical slots [T, K_c, 3], face units
        mel, rms = audio_features(audio)
        visemes = None if phonemes is None else marks_to_weights(phonemes, mel.shape[0], alphabet)
        motion = ProceduralMotion(rig.rest_units, rig.present, self.config.motion(), int(seed))(mel, rms, visemes)
        # 4. frames
        return rig.render_clip(motion)
