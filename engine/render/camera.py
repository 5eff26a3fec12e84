"""Pinhole cameras in the gsplat convention: `viewmat` maps world -> camera [4, 4] (OpenCV axes: x right,
y down, z forward), `K` [3, 3] holds fx, fy, cx, cy in pixels. Orbits circle a target at fixed height."""
from __future__ import annotations

import math

import torch
from torch import Tensor


def intrinsics(width: int, height: int, fov_y_deg: float = 30.0) -> Tensor:
    """K [3, 3] for a vertical field of view in degrees, principal point at the image centre."""
    if not 0 < fov_y_deg < 180:
        raise ValueError(f"fov_y_deg: must lie in (0, 180), got {fov_y_deg}")
    f = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
    return torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=torch.float32)


def unproject(x: Tensor, y: Tensor, z: Tensor, K: Tensor) -> Tensor:
    """Camera-frame points [..., 3] at depth z [...] along the rays through pixel coordinates x, y [...] (continuous:
    a pixel's centre is its index + 0.5) of intrinsics K [3, 3]."""
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    return torch.stack([(x - cx) / fx * z, (y - cy) / fy * z, z], -1)


def camera_centre(viewmat: Tensor) -> Tensor:
    """The centre [3] (world) of the camera of viewmat [4, 4] (world -> camera): -R^T t."""
    return -(viewmat[:3, :3].T @ viewmat[:3, 3])


def look_at(eye: Tensor, target: Tensor, up: Tensor | None = None) -> Tensor:
    """World -> camera matrix [4, 4] for a camera at eye [3] looking at target [3]; `up` [3] is world up
    (default -y, so images come out upright in OpenCV axes)."""
    up = torch.tensor([0.0, -1.0, 0.0]) if up is None else up
    z = target - eye
    if float(z.norm()) < 1e-9:
        raise ValueError("look_at: eye and target coincide")
    z = z / z.norm()
    x = torch.linalg.cross(z, up)
    if float(x.norm()) < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to up")
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    R = torch.stack([x, y, z])                                            # rows: camera axes in world
    M = torch.eye(4)
    M[:3, :3] = R
    M[:3, 3] = -R @ eye
    return M


def orbit(target: Tensor, radius: float, angle_deg: float, height: float = 0.0) -> Tensor:
    """viewmat [4, 4] on a horizontal circle around target; angle 0 looks along +z (from -z)."""
    a = math.radians(angle_deg)
    eye = target + torch.tensor([radius * math.sin(a), height, -radius * math.cos(a)])
    return look_at(eye, target)
