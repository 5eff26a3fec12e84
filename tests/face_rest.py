"""The astronaut photo's own face landmarks as canonical slot positions, for the motion-rig tests."""
from pathlib import Path

import torch

from engine.avatar.landmarks import detect
from engine.avatar.particles import canonical_names
from engine.avatar.photo import load_photo

ASTRONAUT = Path(__file__).resolve().parent.parent / "assets" / "astronaut.png"


def astronaut_rest() -> tuple[torch.Tensor, torch.Tensor, dict[str, int]]:
    """(rest [K_c, 3] in face units (1 = outer eye corner distance), present [K_c], slot index by name): the face
    slots from mediapipe's face mesh on the photo at 256 px, every other slot absent."""
    image, _ = load_photo(ASTRONAUT, max_side=256)
    lm = detect(image)
    unit = float((lm.face[33, :2] - lm.face[263, :2]).norm())
    names = canonical_names()
    rest, present = torch.zeros(len(names), 3), torch.zeros(len(names), dtype=torch.bool)
    for i, name in enumerate(names):
        kind, j = name.split(":")
        if kind == "face":
            rest[i], present[i] = lm.face[int(j)] / unit, True
    return rest, present, {n: i for i, n in enumerate(names)}
