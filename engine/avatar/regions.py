"""Region labels per pixel of the photo (body, face, lips, eyes, hands, hair; ids as in engine.avatar.bundle.REGIONS),
from the person mask and landmarks. Face, lips and eyes are convex hulls of mediapipe's face-mesh index sets
(read from mediapipe's own connection tables), hands the hull of each hand's 21 points widened by a margin,
hair the part of the silhouette in the head's column above the eyebrows that is not face. Everything else in
the silhouette is body. personalize samples face and hands densely and labels every Gaussian from these."""
from __future__ import annotations

import torch
from PIL import Image, ImageDraw
from torch import Tensor

from engine.avatar.bundle import REGIONS
from engine.avatar.landmarks import Landmarks, mediapipe_module

BODY, FACE, LIPS, EYES, HANDS, HAIR = (REGIONS.index(r) for r in ("body", "face", "lips", "eyes", "hands", "hair"))


def face_index_sets() -> dict[str, list[int]]:
    """Face-mesh vertex indices of the face oval, the lips and each eye (from mediapipe's tables)."""
    conn = mediapipe_module().solutions.face_mesh_connections
    def verts(edges):
        return sorted({i for e in edges for i in e})
    return {"oval": verts(conn.FACEMESH_FACE_OVAL), "lips": verts(conn.FACEMESH_LIPS),
            "left_eye": verts(conn.FACEMESH_LEFT_EYE), "right_eye": verts(conn.FACEMESH_RIGHT_EYE)}


def convex_hull(points: Tensor) -> list[tuple[float, float]]:
    """Convex hull of points [P, 2] (x, y), counter-clockwise (Andrew's monotone chain)."""
    pts = sorted(set(map(tuple, points.tolist())))
    if len(pts) <= 2:
        return pts
    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def polygon_mask(polygon: list[tuple[float, float]], height: int, width: int) -> Tensor:
    """Pixels [H, W] bool whose centres fall inside the polygon (pixel coordinates, centres at +0.5)."""
    im = Image.new("L", (width, height), 0)
    if len(polygon) >= 3:
        ImageDraw.Draw(im).polygon([(x - 0.5, y - 0.5) for x, y in polygon], fill=1)
    return torch.from_numpy(__import__("numpy").asarray(im, dtype=bool).copy())


def region_map(lm: Landmarks, person: Tensor) -> Tensor:
    """person [H, W] bool -> region ids [H, W] int64 (-1 outside the person)."""
    H, W = person.shape
    regions = torch.full((H, W), -1, dtype=torch.int64)
    regions[person] = BODY
    if lm.face is not None:
        sets, f = face_index_sets(), lm.face[:, :2]
        face = polygon_mask(convex_hull(f[sets["oval"]]), H, W)
        x0, x1 = float(f[:, 0].min()), float(f[:, 0].max())
        pad = 0.35 * (x1 - x0)
        cols = torch.arange(W, dtype=torch.float32)[None, :].expand(H, W)
        rows = torch.arange(H, dtype=torch.float32)[:, None].expand(H, W)
        head_column = (cols >= x0 - pad) & (cols <= x1 + pad) & (rows <= float(f[sets["lips"], 1].max()))
        regions[person & head_column & ~face] = HAIR
        regions[person & face] = FACE
        regions[person & polygon_mask(convex_hull(f[sets["lips"]]), H, W)] = LIPS
        for eye in ("left_eye", "right_eye"):
            regions[person & polygon_mask(convex_hull(f[sets[eye]]), H, W)] = EYES
    for hand in (lm.left_hand, lm.right_hand):
        if hand is not None:
            c = hand[:, :2].mean(0)
            widened = c + 1.25 * (hand[:, :2] - c)
            regions[person & polygon_mask(convex_hull(widened), H, W)] = HANDS
    return regions
