"""How far the photographed person's surface lies in front of and behind the middle plane, in pixels.

engine.avatar.shell places the front shell at z0 - front and the back shell at z0 + back, for each pixel [H, W].

- Body: the inflated silhouette (engine.avatar.inflate, open at the photo's frame: a body cut off by the frame
  goes on past it) times ShellConfig.thickness. This is a flattened round body:
  a torso is wider than it is deep.
- Head: a head is about as deep as it is wide. So the head region (face, lips, eyes, hair) is inflated on its own
  and scaled to a ball: sqrt(2) * relief is exactly the sphere for a disc (engine.avatar.inflate's identity), times
  ShellConfig.head_roundness. Where the head and the body overlap, the larger depth wins, so the head never
  sinks into the neck.
- Face front: mediapipe's face mesh gives every one of its 478 points a relative depth z. z is on the same scale
  as x (pixels here, engine.avatar.landmarks), and a more negative z is nearer the camera. Inside the face the front
  surface follows it: -z is interpolated from the 4 nearest mesh points (inverse squared distance), then shifted
  so that the face oval sits on the head ball on average. The nose comes forward and the eye sockets sit back.
  The back of the head stays on the ball.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from engine.avatar.inflate import inflate_open
from engine.avatar.knn import knn
from engine.avatar.regions import EYES, FACE, HAIR, LIPS, face_index_sets
from engine.render.camera import unproject


def face_front_depth(face: Tensor, pixels: Tensor, k: int = 4) -> Tensor:
    """-z of the face mesh face [P, 3] (x, y, z pixels) at pixels [M, 2] (x, y): inverse-squared-distance
    weights over the k nearest mesh points in the image plane. -> [M]"""
    flat = lambda xy: torch.cat([xy.float(), torch.zeros(xy.shape[0], 1)], 1)   # noqa: E731 (knn is 3-D)
    d2, idx = knn(flat(pixels), flat(face[:, :2]), k)
    w = 1.0 / (d2 + 0.25)
    return (w * -face[idx, 2]).sum(1) / w.sum(1)


def surface_depth(person: Tensor, regions: Tensor, face: Tensor | None, thickness: float,
                  head_roundness: float, progress: bool = False) -> tuple[Tensor, Tensor]:
    """person [H, W] bool, regions [H, W] (engine.avatar.regions labels), face [478, 3] or None
    -> (front [H, W], back [H, W]) depths in pixels, >= 0, zero outside the person."""
    if person.shape != regions.shape:
        raise ValueError(f"person/regions: shapes differ, {list(person.shape)} vs {list(regions.shape)}")
    body = thickness * inflate_open(person, progress=progress)
    front, back = body.clone(), body.clone()
    head = person & torch.isin(regions, torch.tensor([FACE, LIPS, EYES, HAIR]))
    if int(head.sum()) == 0:
        return front, back
    ball = head_roundness * math.sqrt(2.0) * inflate_open(head)
    front = torch.where(head, torch.maximum(body, ball), front)
    back = front.clone()
    facial = person & torch.isin(regions, torch.tensor([FACE, LIPS, EYES]))
    if face is None or int(facial.sum()) == 0:
        return front, back
    ys, xs = torch.nonzero(facial, as_tuple=True)
    mesh = face_front_depth(face, torch.stack([xs, ys], 1))
    oval = face[face_index_sets()["oval"]]
    ox = oval[:, 0].long().clamp(0, person.shape[1] - 1)
    oy = oval[:, 1].long().clamp(0, person.shape[0] - 1)
    shift = float(front[oy, ox].mean() + oval[:, 2].mean())            # the oval's -z lands on the ball
    front[ys, xs] = (mesh + shift).clamp(min=0)
    return front, back


def surface_normals(depth: Tensor, K: Tensor, z0: float, side: float) -> Tensor:
    """Outward unit normals [H, W, 3] of the surface z = z0 + side * depth * z0 / fx through the photo camera
    (side -1: the front surface, facing the camera; +1: the back). depth [H, W] in pixels (surface_depth).
    Normals come from the cross product of the surface's pixel derivatives (central differences), so near the
    rim of the silhouette, where the inflated relief is steep, they turn sideways. engine.render.splat culls by them."""
    H, W = depth.shape
    fx = float(K[0, 0])
    z = z0 + side * depth.double() * z0 / fx
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5,
                            indexing="ij")
    P = unproject(xx, yy, z, K)                                           # [H, W, 3]
    dv, du = torch.gradient(P, dim=(0, 1))
    n = torch.linalg.cross(du, dv)
    n = torch.where((n[..., 2:3] * side) < 0, -n, n)                        # outward: the front faces -z, the back +z
    return (n / n.norm(dim=-1, keepdim=True).clamp(min=1e-12)).float()
