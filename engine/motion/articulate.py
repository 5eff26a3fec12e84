"""Viseme weights [t, V] (engine/motion/visemes.py) -> lip motion, added on top of any motion source's output.

The jaw keeps following loudness (the source's own motion); the visemes shape the lips around it:
- closed (p b m): the lower lip comes up onto the upper lip, the chin with it: every jaw-weighted slot moves up by
  the frame's current lip opening (the lower inner lip's mean height minus the upper's) times its jaw weight,
  so the inner lips meet whatever the source did;
- labiodental (f v): the lower lip goes up toward the upper teeth (LABIODENTAL_LIFT of the opening) and back,
  the chin half as far;
- rounded (u o w, sh): the mouth corners come in and the lips push forward, the opening narrows a little;
- spread (i e): the corners go out;
- open (a): the opening grows a little beyond what loudness gave.
A weight acts through `amount`: 0 below LOW, 1 above HIGH, linear between (a mark's full coverage is 1; the
viseme model's probabilities rarely reach 1 on a frame). Sizes are in face units (1 = the outer eye corners'
distance), in the photo camera's axes (x right, y down, z away from the camera).
The rig (which slots are lips, the jaw weights, the corner weights) is engine.motion.procedural's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from engine.avatar.mouth import LOWER_INNER, LOWER_LIP, UPPER_INNER
from engine.avatar.particles import canonical_names
from engine.motion.visemes import CLOSED, LABIODENTAL, OPEN, ROUNDED, SPREAD, VISEMES

LOW, HIGH = 0.1, 0.6
LABIODENTAL_LIFT = 0.85


@dataclass
class ArticulationConfig:
    round_in: float = 0.06       # each mouth corner's move toward the middle at full rounding
    protrude: float = 0.04       # the lips' move toward the camera at full rounding
    round_close: float = 0.3     # rounding narrows the opening by this share
    spread_out: float = 0.035    # each mouth corner's move outward at full spreading
    open_more: float = 0.3       # an open vowel widens the opening by this share
    labiodental_back: float = 0.02


def amount(weights: Tensor) -> Tensor:
    """weights [..., V] in 0..1 -> how far each viseme's shape is applied [..., V] in 0..1."""
    return ((weights - LOW) / (HIGH - LOW)).clamp(0, 1)


class Articulator:
    """apply(motion [t, K_c, 3], weights [t, V]) -> motion [t, K_c, 3] (face units), for one avatar's rig
    (an engine.motion.procedural.ProceduralMotion: its rest, present, jaw_w, corner_w and lip_slots)."""

    def __init__(self, rig, cfg: ArticulationConfig = ArticulationConfig()):
        names = canonical_names()
        where = {n: i for i, n in enumerate(names)}
        ok = rig.present

        def present(points) -> Tensor:
            idx = [where[f"face:{p}"] for p in points]
            return torch.tensor([i for i in idx if bool(ok[i])], dtype=torch.long)

        self.cfg, self.rest, self.n_visemes = cfg, rig.rest, len(VISEMES)
        pairs = [(where[f"face:{u}"], where[f"face:{lo}"]) for u, lo in zip(UPPER_INNER[1:-1], LOWER_INNER[1:-1])
                 if bool(ok[where[f"face:{u}"]]) and bool(ok[where[f"face:{lo}"]])]
        self.upper_inner = torch.tensor([u for u, _ in pairs], dtype=torch.long)   # partners, left to right
        self.lower_inner = torch.tensor([lo for _, lo in pairs], dtype=torch.long)
        # the jaw weights, scaled so that the lower inner lip moves by the opening on average: [K_c]
        self.jaw_w = rig.jaw_w / rig.jaw_w[self.lower_inner].mean().clamp(min=1e-3) if pairs else rig.jaw_w
        self.corner_w = rig.corner_w[:, 0]                            # [K_c], -1 (left corner) .. 1 (right)
        self.lips = rig.lip_slots
        lower = torch.zeros(len(names), dtype=torch.bool)
        lower[present(LOWER_LIP)] = True
        self.lower_lip = lower
        self.usable = len(self.upper_inner) > 0 and len(self.lower_inner) > 0

    def apply_where(self, motion: Tensor, weights: Tensor | None) -> Tensor:
        """apply() on the rows of weights [t, V] that are not NaN (timed marks cover only part of a batch);
        None leaves the motion as it is."""
        if weights is None:
            return motion
        if weights.shape != (motion.shape[0], self.n_visemes):
            raise ValueError(f"visemes: expected [{motion.shape[0]}, {self.n_visemes}], got {list(weights.shape)}")
        rows = ~torch.isnan(weights).any(1)
        if bool(rows.any()):
            motion = motion.clone()
            motion[rows] = self.apply(motion[rows], weights[rows])
        return motion

    def apply(self, motion: Tensor, weights: Tensor) -> Tensor:
        if weights.shape != (motion.shape[0], len(VISEMES)):
            raise ValueError(f"weights: expected [{motion.shape[0]}, {len(VISEMES)}], got {list(weights.shape)}")
        if not self.usable or motion.shape[0] == 0:
            return motion
        c, a = self.cfg, amount(weights.to(motion.dtype))
        pos = self.rest[None] + motion
        pair_gap = (pos[:, self.lower_inner, 1] - pos[:, self.upper_inner, 1]).clamp(min=0)   # [t, pairs]
        # the inner lips' mean vertical opening [t, 1] (face units)
        gap = (pos[:, self.lower_inner, 1].mean(1) - pos[:, self.upper_inner, 1].mean(1)).clamp(min=0)[:, None]
        jaw, lower = self.jaw_w[None], self.lower_lip[None].to(motion.dtype)
        # how far each slot would rise to shut the mouth: the jaw's share of the mean opening, and for the
        # lower inner lip exactly its own gap to its upper partner
        shut = gap * jaw
        shut[:, self.lower_inner] = pair_gap
        out = motion.clone()
        f = a[:, LABIODENTAL, None]
        share = (a[:, CLOSED, None] + f * (LABIODENTAL_LIFT * lower + 0.5 * (1 - lower))
                 + a[:, ROUNDED, None] * c.round_close).clamp(max=1)  # never past shut
        out[..., 1] += a[:, OPEN, None] * c.open_more * gap * jaw - share * shut
        out[..., 2] += f * c.labiodental_back * lower
        lips = self.lips[None].to(motion.dtype)
        out[..., 0] += (a[:, SPREAD, None] * c.spread_out - a[:, ROUNDED, None] * c.round_in) * self.corner_w[None]
        out[..., 2] -= a[:, ROUNDED, None] * c.protrude * lips
        return out
