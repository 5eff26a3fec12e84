"""The canonical control-particle layout: one shared list of semantic slots for every avatar.

Motion models work across identities because they speak about the same K_c slots for everyone (docs/architecture.md,
"Why control particles"). A slot is a named landmark:

    face:i        mediapipe face-mesh vertex i: every lip and eye vertex, and every 6th other vertex
    pose:i        mediapipe pose joint i for i = 11..32 (shoulders down; the head is covered by the face)
    hand_left:i   hand_right:i   the 21 mediapipe hand landmarks of each hand

An avatar holds the slots its photo showed (`Avatar.particle_names`, a subset in this order).
Motion x [T, K_c, 3] is in face units: 1 = the distance between the outer eye corners (face:33 and face:263).
`motion_scale(avatar)` gives the world length of one face unit, so motions carry over between people of any
size and photos of any framing. The face's slots move on the level face: `head_roll` is the angle of the
photo's eye line, and a tilted head's face motion is turned by it (engine.view.AvatarView.to_world), so that a
jaw drops along its own face and a nod turns about its own ears on a head tilted in the photo.
"""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from engine.avatar.regions import BODY, EYES, FACE, HANDS, LIPS, face_index_sets

POSE_JOINTS = range(11, 33)
EYE_CORNERS = ("face:33", "face:263")          # mediapipe face mesh: right and left outer eye corners
SHOULDERS = ("pose:11", "pose:12")             # mediapipe pose: left and right shoulder


@lru_cache(maxsize=1)
def canonical_slots() -> tuple[tuple[str, int], ...]:
    """((name, region), ...) for all K_c slots, in canonical order."""
    sets = face_index_sets()
    lips, eyes = set(sets["lips"]), set(sets["left_eye"]) | set(sets["right_eye"])
    slots = [(f"face:{i}", LIPS if i in lips else EYES if i in eyes else FACE)
             for i in range(478) if i in lips or i in eyes or i % 6 == 0]
    slots += [(f"pose:{i}", HANDS if 15 <= i <= 22 else BODY) for i in POSE_JOINTS]
    slots += [(f"{side}:{i}", HANDS) for side in ("hand_left", "hand_right") for i in range(21)]
    return tuple(slots)


def canonical_names() -> list[str]:
    return [name for name, _ in canonical_slots()]


def slot_index(names: list[str]) -> Tensor:
    """Canonical slot of each name [K] (int64); ValueError naming any that is not a canonical slot."""
    where = {name: i for i, name in enumerate(canonical_names())}
    missing = [n for n in names if n not in where]
    if missing:
        raise ValueError(f"particle names: not canonical slots: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return torch.tensor([where[n] for n in names], dtype=torch.long)


def face_rows(names: list[str]) -> Tensor:
    """[K] bool: which of these slot names are on the face ("face:i"), the rows that turn with the head's roll."""
    return torch.tensor([n.startswith("face:") for n in names], dtype=torch.bool)


def head_roll(particles: Tensor, names: list[str]) -> float:
    """The head's roll in the photo (radians): the angle of the eye line, outer corner face:33 to face:263, in the
    x-y plane of the world (the photo camera's axes, y down); 0 when either corner is missing."""
    where = {n: i for i, n in enumerate(names)}
    if not all(c in where for c in EYE_CORNERS):
        return 0.0
    d = particles[where[EYE_CORNERS[1]]] - particles[where[EYE_CORNERS[0]]]
    return float(torch.atan2(d[1], d[0]))


def turn_xy(v: Tensor, angle: float) -> Tensor:
    """v [..., 3] (or photo pixels [..., 2]) turned by angle (radians) about the z axis (x toward y), a copy."""
    c, s = torch.cos(torch.tensor(angle, dtype=v.dtype)), torch.sin(torch.tensor(angle, dtype=v.dtype))
    out = v.clone()
    out[..., 0], out[..., 1] = c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]
    return out


def turn_rows(v: Tensor, rows: Tensor, angle: float) -> Tensor:
    """v [..., K, 3] with its `rows` [K] bool turned by angle (radians) about the z axis (turn_xy); v itself
    when the angle is 0."""
    if angle == 0.0:
        return v
    return torch.where(rows.to(v.device)[:, None], turn_xy(v, angle), v)


def level_face(points: Tensor, names: list[str]) -> Tensor:
    """Rest points [K, 3] (any unit) with the face's rows turned level: by minus the head's roll about the eye
    corners' midpoint (the rest pose the face's canonical motion is made on; the rest of the rows as they are)."""
    roll = head_roll(points, names)
    if roll == 0.0:
        return points.clone()
    where = {n: i for i, n in enumerate(names)}
    mid = (points[where[EYE_CORNERS[0]]] + points[where[EYE_CORNERS[1]]]) / 2
    return torch.where(face_rows(names)[:, None], turn_xy(points - mid, -roll) + mid, points)   # others exact


def motion_scale(particles: Tensor, names: list[str]) -> float:
    """World length of one face unit for an avatar's particles [K, 3]: the outer-eye-corner distance, or a
    third of the shoulder width when the photo has no face (about the same length on an adult)."""
    where = {n: i for i, n in enumerate(names)}
    for pair, share in ((EYE_CORNERS, 1.0), (SHOULDERS, 1.0 / 3.0)):
        if all(p in where for p in pair):
            d = float((particles[where[pair[0]]] - particles[where[pair[1]]]).norm())
            if d > 0:
                return d * share
    raise ValueError("particles: neither both outer eye corners nor both shoulders, so no face unit")
