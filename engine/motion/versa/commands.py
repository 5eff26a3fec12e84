"""Text commands for gestures: a fixed vocabulary with a built-in text embedding, and the gesture templates
that synthesise labelled training motion for it.

Text features: no text-encoder weights can be had offline here (CLIP needs a download), so a command is its
bag of words over VOCAB, L2-normalised, [V]. Word order does not matter, and an unknown word is a ValueError
naming it. The empty command is the zero vector: no gesture.

Body slots: the canonical slots (engine.avatar.particles) of the arms, legs and hands, mediapipe pose 11..32 and
21 points per hand, 64 slots [64, 3]. The motion is in face units (1 = outer-eye-corner distance), image
axes (x right, y down, z away), and the person's right is mediapipe's even pose indices and "hand_right".
"""
from __future__ import annotations

import re

import numpy as np
import torch
from torch import Tensor

from engine.avatar.particles import canonical_names

VOCAB = ("raise", "wave", "right", "left", "both", "hand", "hands", "arm", "arms", "your", "the", "a")
# Arm gestures only: head gestures (nod, shake) live in the face slots, which this body-motion prior leaves to
# the speech motion models.
COMMANDS = ("", "raise right hand", "raise left hand", "raise both hands", "wave right hand", "wave left hand",
            "wave both hands")
BODY_NAMES = [n for n in canonical_names() if n.startswith(("pose:", "hand_left:", "hand_right:"))]
BODY_SLOTS = torch.tensor([canonical_names().index(n) for n in BODY_NAMES])      # [64] into the K_c slots
BODY_DIM = 3 * len(BODY_NAMES)                                                   # 192


def text_features(text: str) -> Tensor:
    """A command -> [len(VOCAB)] float32 (bag of words, L2-normalised; zeros for the empty command)."""
    if not isinstance(text, str):
        raise ValueError(f"text: expected a string, got {type(text).__name__}")
    words = re.findall(r"[a-z]+", text.lower())
    unknown = sorted({w for w in words if w not in VOCAB})
    if unknown:
        raise ValueError(f"text: unknown word(s) {unknown}; the command vocabulary is {list(VOCAB)} "
                         f"(e.g. {[c for c in COMMANDS if c]})")
    v = torch.zeros(len(VOCAB))
    for w in words:
        v[VOCAB.index(w)] += 1.0
    return v / v.norm() if words else v


def _side_slots(side: str) -> tuple[list[int], list[int]]:
    """(hand slots: wrist, fingers and the hand's 21 points; elbow slot) of 'right' or 'left', into BODY_NAMES."""
    even = side == "right"
    wrist_pts = (16, 18, 20, 22) if even else (15, 17, 19, 21)
    hand = [BODY_NAMES.index(f"pose:{j}") for j in wrist_pts]
    hand += [i for i, n in enumerate(BODY_NAMES) if n.startswith(f"hand_{side}:")]
    return hand, [BODY_NAMES.index(f"pose:{14 if even else 13}")]


def _envelope(T: int, ramp: int, start: int = 0, end: int | None = None) -> np.ndarray:
    """0 before start, smooth (cosine) rise over `ramp` frames, 1, smooth fall to 0 at `end`: [T]."""
    end = T if end is None else end
    t = np.arange(T, dtype=np.float64)
    up = np.clip((t - start) / max(ramp, 1), 0, 1)
    down = np.clip((end - 1 - t) / max(ramp, 1), 0, 1)
    return (0.5 - 0.5 * np.cos(np.pi * up)) * (0.5 - 0.5 * np.cos(np.pi * down))


def gesture_motion(command: str, T: int, rng: np.random.Generator | None = None, hold: bool = False) -> Tensor:
    """The template motion of a command over T frames at 25 fps -> [T, 64, 3] body-slot displacement.

    Raise: the hand points rise by `lift` (2.2-3.2 face units), the elbow by 40% of it, easing in from the
    window's start and out by its end over 5-9 frames. Wave: raised by 75% of that, swinging +-0.6-0.8 face
    units sideways at 1.25 Hz. With `rng`, amplitude and easing vary (training data); without, the mid values.
    hold=True keeps the pose to the last frame (no easing out).
    """
    text_features(command)                                   # validates the words
    words = set(re.findall(r"[a-z]+", command.lower()))
    m = np.zeros((T, len(BODY_NAMES), 3))
    if not words:
        return torch.zeros(T, len(BODY_NAMES), 3)
    u = (lambda lo, hi: (lo + hi) / 2) if rng is None else (lambda lo, hi: float(rng.uniform(lo, hi)))
    env = _envelope(T, ramp=max(2, int(u(5, 9))), start=0, end=10 * T if hold else T)
    t = np.arange(T) / 25.0
    sides = ["right", "left"] if "both" in words else [s for s in ("right", "left") if s in words]
    if words & {"raise", "wave"} and not sides:
        sides = ["right"]
    for side in sides:
        hand, elbow = _side_slots(side)
        lift = u(2.2, 3.2) * (0.75 if "wave" in words else 1.0)
        m[:, hand, 1] -= lift * env[:, None]
        m[:, elbow, 1] -= 0.4 * lift * env[:, None]
        if "wave" in words:
            # 1.25 Hz from phase 0 at the window's start: the same command always swings the same way, so the
            # token model can learn it (a random phase would average out in its greedy decoding); a 2 Hz swing
            # (3 tokens a period) was smoothed away by the VQ-VAE
            swing = u(0.6, 0.8) * np.sin(2 * np.pi * 1.25 * t) * env
            m[:, hand, 0] += swing[:, None]
    return torch.from_numpy(m).float()
