"""Quaternion helpers in plain torch, the tests' reference for rotations (pytorch3d cannot be installed here).

Quaternions are wxyz, [..., 4], the layout of `Gaussians.quats`. The Gaussian decoder (engine/deform/decoder.py)
rotates with its own per-axis form of normalize(rotvec_to_quat(r) ⊗ q); tests/test_decoder.py checks it against
these two plain functions, and tests/test_ply.py checks the web export's rotation with them.

Both are exact at the identity: `rotvec_to_quat(0)` is bitwise (1, 0, 0, 0), and `quat_multiply((1, 0, 0, 0), q)`
is bitwise q (1 * a = a and a - 0 = a in IEEE arithmetic).
"""
from __future__ import annotations

import torch
from torch import Tensor

# Below this squared angle (theta < 1e-4 rad) the Taylor series are exact to float32 precision and avoid 0/0.
SMALL_ANGLE_SQ = 1e-8


def _check_last(name: str, t: Tensor, size: int) -> None:
    if not isinstance(t, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.ndim < 1 or t.shape[-1] != size:
        raise ValueError(f"{name}: expected shape [..., {size}], got {list(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"{name}: expected a floating dtype, got {t.dtype}")


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product a ⊗ b of wxyz quaternions a [..., 4] and b [..., 4] (broadcast) -> [..., 4].

    As rotations, a ⊗ b applies b first, then a: R(a ⊗ b) = R(a) @ R(b).
    """
    _check_last("a", a, 4)
    _check_last("b", b, 4)
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


def rotvec_to_quat(v: Tensor) -> Tensor:
    """Axis-angle vectors v [..., 3] (direction = axis, length = angle in radians) -> unit wxyz quaternions [..., 4].

    q = (cos(theta / 2), sin(theta / 2) / theta * v). For theta < 1e-4 the Taylor series
    cos(theta/2) = 1 - theta^2/8 and sin(theta/2)/theta = 1/2 - theta^2/48 are used (the next terms, theta^4/384
    and theta^4/3840, are below 3e-19, under double precision's resolution of 1), so v = 0 gives exactly
    (1, 0, 0, 0) and gradients stay finite there.
    """
    _check_last("v", v, 3)
    theta_sq = (v * v).sum(-1)
    small = theta_sq < SMALL_ANGLE_SQ
    # The large-angle branch is evaluated everywhere; feed it a harmless angle where it is not used so its
    # gradient is never 0 * inf.
    theta = torch.where(small, torch.ones_like(theta_sq), theta_sq).sqrt()
    half = 0.5 * theta
    w = torch.where(small, 1.0 - theta_sq / 8.0, half.cos())
    k = torch.where(small, 0.5 - theta_sq / 48.0, half.sin() / theta)
    return torch.cat([w.unsqueeze(-1), v * k.unsqueeze(-1)], dim=-1)
