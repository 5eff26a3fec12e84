"""Arm gestures as a turn of the arm chain about the shoulder (issue 18): what "raise right hand" does to an avatar.

The gesture prior (prior.py) speaks in face units and lifts the hand points by about 2.6 of them, straight up:
on a full-body photo that leaves the wrist below the shoulder, and a translation is not a raised arm. So for the
arm a command names, the engine replaces the prior's motion with the arm's own chain turned to a raised pose
(`raise_arm`): the upper arm out to the side and 30 degrees up, the forearm straight up, the hand carried
rigidly by the wrist. An avatar whose photo shows the elbow but not the wrist has a straight arm (its forearm
rides the upper arm, engine.avatar.limbs): that arm goes 60 degrees up. The bones turn about the view axis
through the horizontal outward direction (so an arm hanging down swings up at the side instead of through the
body, and its front keeps facing the camera), eased in and out over the window like the prior's templates
(commands._envelope). A wave adds the prior's sideways swing to the wrist and hand. The arm the command does
not name, shoulder included, stays exactly where the speech motion puts it.

Everything is in the avatar's world frame (the photo camera's: x right, y down, z away); `arm_gesture` turns
it into the canonical face-unit motion the engine adds to its frames.
"""
from __future__ import annotations

import math
import re

import torch
from torch import Tensor

from engine.avatar.limbs import HAND_POINTS, rotvec_between, rotvec_matrix
from engine.avatar.particles import canonical_names

from .commands import _envelope

UPPER_ARM_UP_DEG = 30.0                          # the raised upper arm, above the horizontal
STRAIGHT_ARM_UP_DEG = 60.0                       # the same for an arm without a wrist particle: it stays straight
JOINTS = {"right": (12, 14, 16), "left": (11, 13, 15)}      # shoulder, elbow, wrist


def arm_slots(side: str) -> list[str]:
    """The slot names of one arm: shoulder, elbow, wrist and finger joints, and the 21 hand points."""
    s, e, _ = JOINTS[side]
    return [f"pose:{s}", f"pose:{e}"] + [f"pose:{j}" for j in HAND_POINTS[side]] + \
        [f"hand_{side}:{i}" for i in range(21)]


def _azimuth(d: Tensor) -> float:
    return math.atan2(float(d[1]), float(d[0]))


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def _path(rest: Tensor, out: Tensor, target: Tensor, e: Tensor) -> Tensor:
    """Rotation matrices [T, 3, 3] turning the bone direction `rest` [3] (unit) to `target` (in the image plane)
    as e [T] goes 0 -> 1: about the view axis, the way that passes `out`, by e of the whole angle, and by e of
    the small tilt out of the image plane left (engine.avatar.limbs.facing_rotation: the limb does not roll)."""
    phi = _wrap(_azimuth(out) - _azimuth(rest)) + _wrap(_azimuth(target) - _azimuth(out))
    if float(rest[:2].norm()) < 1e-9:                              # pointing at the camera: no azimuth
        phi = 0.0
    zero = torch.zeros_like(e)
    turn = rotvec_matrix(torch.stack([zero, zero, e * phi], -1))                    # [T, 3, 3]
    tilt = rotvec_between(rotvec_matrix(rest.new_tensor([0.0, 0.0, phi])) @ rest, target)
    return rotvec_matrix(e[:, None] * tilt) @ turn


def raise_arm(particles: Tensor, names: list[str], side: str, envelope: Tensor) -> Tensor | None:
    """Particles [K, 3] (rest, world) with names, side 'right' or 'left', envelope [T] in [0, 1] -> world
    displacement [T, K, 3] of that arm raised by `envelope` (0 elsewhere), or None when the avatar lacks the
    shoulder or the elbow (no chain to turn)."""
    T, K = envelope.shape[0], particles.shape[0]
    move = particles.new_zeros(T, K, 3)
    where = {n: i for i, n in enumerate(names)}
    s_j, e_j, w_j = JOINTS[side]
    if f"pose:{s_j}" not in where or f"pose:{e_j}" not in where:
        return None
    S, E = particles[where[f"pose:{s_j}"]], particles[where[f"pose:{e_j}"]]
    other = where.get(f"pose:{JOINTS['left' if side == 'right' else 'right'][0]}")
    if other is not None and float(S[0] - particles[other][0]) != 0:
        sign = math.copysign(1.0, float(S[0] - particles[other][0]))
    else:
        sign = -1.0 if side == "right" else 1.0          # a person facing the camera: their right on the left
    out = particles.new_tensor([sign, 0.0, 0.0])
    wrist = where.get(f"pose:{w_j}", where.get(f"hand_{side}:0"))
    a = math.radians(UPPER_ARM_UP_DEG if wrist is not None else STRAIGHT_ARM_UP_DEG)
    up_out, up = particles.new_tensor([sign * math.cos(a), -math.sin(a), 0.0]), particles.new_tensor([0.0, -1.0, 0.0])
    e = envelope.to(particles.dtype)
    v1 = E - S
    R1 = _path(v1 / v1.norm().clamp_min(1e-12), out, up_out, e)                       # [T, 3, 3]
    E_t = S + (R1 @ v1)                                                               # [T, 3]
    move[:, where[f"pose:{e_j}"]] = E_t - E
    if wrist is None:
        return move
    W = particles[wrist]
    v2 = W - E
    R2 = _path(v2 / v2.norm().clamp_min(1e-12), out, up, e)
    W_t = E_t + R2 @ v2
    hand = [where[n] for n in [f"pose:{j}" for j in HAND_POINTS[side]] + [f"hand_{side}:{i}" for i in range(21)]
            if n in where]
    rel = particles[hand] - W                                                         # [H, 3]
    move[:, hand] = W_t[:, None] + (R2[:, None] @ rel[None, :, :, None])[..., 0] - particles[hand][None]
    return move


def commanded_sides(text: str) -> list[str]:
    """The arms a command names ('both': both; no side named: the right, as the templates do)."""
    words = set(re.findall(r"[a-z]+", text.lower()))
    if not words & {"raise", "wave"}:
        return []
    if "both" in words:
        return ["right", "left"]
    return [s for s in ("right", "left") if s in words] or ["right"]


def arm_gesture(text: str, gesture: Tensor, particles: Tensor, names: list[str], to_canonical) -> Tensor:
    """The prior's gesture [T, K_c, 3] (face units) for `text` -> the same with each named arm's slots replaced by
    its raised chain (plus, for a wave, the prior's sideways swing of the hand) and the other arm's slots 0.
    A named arm without a shoulder or elbow particle keeps the prior's motion (it has no chain to turn).
    to_canonical: world motion [T, K, 3] -> canonical [T, K_c, 3] (engine.view.AvatarView.to_canonical)."""
    sides = commanded_sides(text)
    if not sides:
        return gesture
    T = gesture.shape[0]
    env = torch.from_numpy(_envelope(T, ramp=7)).float()
    slot = {n: i for i, n in enumerate(canonical_names())}
    out = gesture.clone()
    waving = "wave" in text.lower()
    for side in ("right", "left"):
        idx = torch.tensor([slot[n] for n in arm_slots(side)])
        if side not in sides:
            out[:, idx] = 0
            continue
        move = raise_arm(particles, names, side, env)
        if move is None:
            continue
        out[:, idx] = to_canonical(move)[:, idx]                                          # [T, K_c, 3]
        if waving:
            hand = torch.tensor([slot[n] for n in arm_slots(side)[2:]])
            swing = gesture[:, hand, 0].mean(1)                                          # [T] sideways
            out[:, hand, 0] += swing[:, None]
    return out
