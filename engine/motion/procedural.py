"""Rule-based audio -> control-particle motion: the baseline motion source.

It drives the live engine until a trained model exists, and it is the driver of the offline procedural teacher.
Input per 25 fps frame: the log-mel frame [n_mels] and the RMS [1] from engine.audio.features. Output: displacements
[T, K_c, 3] of the canonical slots (engine.avatar.particles), in face units, in the photo camera's axes (x right,
y down, z away from the camera), the face's slots on the level face (a tilted head's turned level: `for_avatar`).
Everything is causal and has per-frame state, so `push` in chunks of any size gives exactly the offline result.
Randomness (blinks, sway) is a function of the seed and the absolute frame index, so that equality holds for it
too.

What moves, and what drives it:
- jaw and lips: loudness (dB mapped to 0..1) with a fast attack and a slower release. The chin and lower lip
  drop, the upper lip lifts a little. The spectral tilt (high vs low mel energy) spreads the mouth corners on
  bright sounds (i, e) and rounds them inwards on dark ones (o, u).
- head: slow sway (yaw, roll) from smooth deterministic noise; a nod (pitch) answering each loudness onset
  (a prosody peak). The head pivots about a point below and behind the chin.
- eyes: blinks at random intervals (mean 4 s), BLINK's 6 frames each (240 ms, 3 of them shut: with 2, a face
  tracker at 25 fps missed some blinks on small faces): every upper-lid vertex moves onto its partner on
  the lower lid (engine.avatar.eyelids.lid_partners), so a closed eye is closed, and the eyeball slots
  (eyelids.EYEBALLS) move back, so what the eye opening showed hides behind the lid; the avatar's eyelid skinning
  carries the lid's motion to the lid only and the eyeball's to the eye opening only.
- breathing: a 4 s cycle that lifts the shoulders and everything above them slightly.
- beat gestures: onsets of stressed syllables (loud onsets) lift the wrists and hands, with a damped bounce.
- silence: the jaw closes and the gestures fade, while sway, blinks and breathing go on (idle motion).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from engine.avatar.eyelids import EYEBALLS, lid_partners
from engine.avatar.mouth import LOWER_LIP, UPPER_LIP
from engine.avatar.particles import canonical_names, canonical_slots
from engine.avatar.regions import BODY, EYES, FACE, HANDS, LIPS
from engine.motion.articulate import Articulator

FPS = 25
BLINK = (0.5, 1.0, 1.0, 1.0, 0.6, 0.25)    # lid closure per frame of a blink, in time order


@dataclass
class ProceduralConfig:
    floor_db: float = -45.0      # loudness 0 at this RMS level (dBFS) ...
    full_db: float = -10.0       # ... and 1 at this one (speech peaking near 0 dBFS has loud syllables near -10)
    attack: float = 0.85         # per-frame smoothing toward a louder value (1 = instant)
    release: float = 0.5         # per-frame smoothing toward a quieter value
    jaw_open: float = 0.30       # chin drop at full loudness, face units (1 = outer eye corner distance)
    corner_spread: float = 0.06  # mouth-corner spread / rounding range, face units
    sway_deg: float = 4.0        # head sway amplitude (yaw, roll); 2.5 gave a nose-tip std of 0.036 eye widths,
                                 # under issue 19's 0.05 (docs/phonemes.md)
    nod_deg: float = 6.0         # head nod on a loudness onset
    onset: float = 0.12          # loudness jump (per frame, 0..1 scale) that counts as an onset
    blink_every_s: float = 4.0   # mean time between blinks
    eye_back: float = 0.2        # a closed blink pushes the eyeballs back this far (face units), behind the lids
    saccade: float = 0.012       # gaze jumps: the eyeballs shift up to this far (face units) ...
    saccade_every_s: float = 1.5  # ... at random intervals of this mean
    breath_period_s: float = 4.0
    breath: float = 0.02         # shoulder lift, face units
    gesture: float = 0.35        # hand lift on a stressed onset, face units


def _hash_uniform(seed: int, frame: int, stream: int) -> float:
    """A uniform number in [0, 1) that depends only on (seed, frame, stream): splitmix64 finaliser."""
    z = (seed * 0x9E3779B97F4A7C15 + frame * 0xBF58476D1CE4E5B9 + stream * 0x94D049BB133111EB) & (2**64 - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    return ((z ^ (z >> 31)) >> 11) / float(2**53)


def _smooth_noise(seed: int, frame: int, stream: int) -> float:
    """Smooth noise in about [-1, 1]: three sines of 0.07-0.4 Hz with seeded phases, evaluated at the frame."""
    t = frame / FPS
    total = 0.0
    for k, freq in enumerate((0.07, 0.17, 0.4)):
        phase = 2 * math.pi * _hash_uniform(seed, -1, 16 * stream + k)
        total += math.sin(2 * math.pi * freq * t + phase) / (k + 1)
    return total / 1.83


def _rotation(pitch: float, yaw: float, roll: float) -> Tensor:
    """R [3, 3] = Rz(roll) Ry(yaw) Rx(pitch), angles in radians, camera axes (x right, y down, z forward)."""
    cx, sx, cy, sy, cz, sz = (math.cos(pitch), math.sin(pitch), math.cos(yaw), math.sin(yaw),
                              math.cos(roll), math.sin(roll))
    rx = torch.tensor([[1, 0, 0], [0, cx, -sx], [0, sx, cx]], dtype=torch.float32)
    ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=torch.float32)
    rz = torch.tensor([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]], dtype=torch.float32)
    return rz @ ry @ rx


class ProceduralMotion:
    """rest [K_c, 3]: the avatar's canonical slot positions in face units (any value where absent),
    present [K_c] bool. `push(mel [t, n_mels], rms [t]) -> [t, K_c, 3]`; zero motion on absent slots."""

    def __init__(self, rest: Tensor, present: Tensor, cfg: ProceduralConfig = ProceduralConfig(), seed: int = 0):
        slots = canonical_slots()
        if rest.shape != (len(slots), 3) or present.shape != (len(slots),):
            raise ValueError(f"rest/present: expected [{len(slots)}, 3] and [{len(slots)}], got "
                             f"{list(rest.shape)} and {list(present.shape)}")
        self.cfg, self.seed, self.present = cfg, seed, present.bool()
        self.rest = torch.where(self.present[:, None], rest.float(), torch.zeros(()))
        self._rig(torch.tensor([r for _, r in slots]), canonical_names())
        self.articulator = Articulator(self)
        self.reset()

    @classmethod
    def for_avatar(cls, avatar, cfg: ProceduralConfig = ProceduralConfig(), seed: int = 0) -> "ProceduralMotion":
        """Rest slots from an Avatar's particles (world units -> face units; the face's slots on the level face,
        turned back by the head's roll about the eye corners' midpoint, as engine.view.AvatarView.to_world
        expects)."""
        from engine.avatar.particles import level_face, motion_scale, slot_index
        names = avatar.particle_names
        idx = slot_index(names)
        rest = torch.zeros(len(canonical_slots()), 3)
        present = torch.zeros(len(canonical_slots()), dtype=torch.bool)
        rest[idx] = level_face(avatar.particles.float(), names) / motion_scale(avatar.particles, names)
        present[idx] = True
        return cls(rest, present, cfg, seed)

    def reset(self) -> None:
        self.frame, self.level, self.slow, self.nod, self.nod_v, self.hand, self.hand_v = 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
        self.blink_left = 0
        self.gaze = torch.zeros(2)

    def interrupt(self) -> None:
        """Barge-in: speech stops now, so the jaw closes and gestures stop on the next frame (idle motion,
        blinks and breathing carry on)."""
        self.level = self.slow = self.hand = self.hand_v = 0.0

    # -- rig: which slots each motion moves, and how much ------------------------------------------------
    def _rig(self, regions: Tensor, names: list[str]) -> None:
        where = {n: i for i, n in enumerate(names)}
        p, ok = self.rest, self.present
        face = ok & torch.isin(regions, torch.tensor([FACE, LIPS, EYES]))
        self.head = face
        self.jaw_w = torch.zeros(len(names))
        self.corner_w = torch.zeros(len(names), 3)
        self.lid_shut = torch.zeros(len(names), 3)
        if bool(ok[where["face:13"]]) and bool(ok[where["face:14"]]):
            low_outer = "face:17" if bool(ok[where["face:17"]]) else "face:14"
            up, low, chin = p[where["face:13"], 1], p[where[low_outer], 1], p[face, 1].max()   # chin: lowest
            cx = p[where["face:13"], 0]
            # jaw weight: 0 above the lip line, ramping to 1 at the lower lip's outer edge, fading toward the ears.
            # The lips themselves go by name: the whole lower lip rides the jaw and the upper lip stays, because
            # a closed rest mouth puts both inner lips on one line, where their heights cannot tell them apart.
            ramp = ((p[:, 1] - up) / (low - up).clamp(min=1e-3)).clamp(0, 1)
            index = torch.tensor([int(n.split(":")[1]) if n.startswith("face:") else -1 for n in names])
            ramp = torch.where(torch.isin(index, torch.tensor(LOWER_LIP)), 1.0, ramp)
            ramp = torch.where(torch.isin(index, torch.tensor(UPPER_LIP)), 0.0, ramp)
            half_width = (chin - up).abs().clamp(min=0.2) * 1.6
            self.jaw_w = torch.where(face, ramp * torch.exp(-((p[:, 0] - cx) / half_width) ** 2), torch.zeros(()))
            lips = ok & (regions == LIPS)
            self.lip_slots = lips
            self.upper_lip = lips & torch.isin(index, torch.tensor(UPPER_LIP))
            dx = p[:, 0] - cx
            self.corner_w[:, 0] = torch.where(lips, dx / dx[lips].abs().max().clamp(min=1e-3), torch.zeros(()))
            self.pivot = torch.stack([cx, chin + 0.6, p[face, 2].mean() + 0.8])
        else:
            self.upper_lip = torch.zeros(len(names), dtype=torch.bool)
            self.lip_slots = torch.zeros(len(names), dtype=torch.bool)
            self.pivot = p[face].mean(0) if bool(face.any()) else torch.zeros(3)
        # blink: each upper-lid vertex (corners excepted) goes onto its partner on the lower lid
        for upper, lower in lid_partners():
            u, lo = where[upper], where[lower]
            if bool(ok[u]) and bool(ok[lo]):
                self.lid_shut[u] = p[lo] - p[u]
        self.eyeballs = torch.tensor([where[e] for e in EYEBALLS if bool(ok[where[e]])], dtype=torch.long)
        self.shoulders = ok & (regions == BODY)
        self.hands = ok & (regions == HANDS)

    def blink_offsets(self, amount: float) -> Tensor:
        """The blink alone [K_c, 3] (face units) at amount 0 (open) .. 1 (closed): the upper lids on the way to
        the lower lids, the eyeballs back (by amount^2: behind the lid only once it is mostly down)."""
        out = self.lid_shut * amount
        out[self.eyeballs, 2] += self.cfg.eye_back * amount * amount
        return out

    # -- per frame --------------------------------------------------------------------------------------
    def _step(self, mel: Tensor, rms: float) -> Tensor:
        c, f = self.cfg, self.frame
        db = 20.0 * math.log10(max(rms, 1e-8))
        loud = min(max((db - c.floor_db) / (c.full_db - c.floor_db), 0.0), 1.0)
        rise = loud - self.level
        self.level += (c.attack if rise > 0 else c.release) * rise
        onset = loud - self.slow > c.onset and rise > 0
        self.slow += 0.15 * (loud - self.slow)
        # spectral tilt: energy above ~2 kHz minus below, in log-mel units, squashed to -1..1
        n = mel.shape[0]
        tilt = math.tanh(0.5 * float(mel[n // 2:].mean() - mel[: n // 4].mean() + 2.0)) * self.level
        # nod and hand bounce: damped springs kicked by onsets
        if onset:
            self.nod_v += c.nod_deg * rise * 2.0
            if loud > 0.55:
                self.hand_v += c.gesture * loud
        for name, k, d in (("nod", 0.25, 0.55), ("hand", 0.15, 0.45)):
            x, v = getattr(self, name), getattr(self, name + "_v")
            v = (1 - d) * v - k * x
            setattr(self, name, x + v)
            setattr(self, name + "_v", v)
        # blinks
        if self.blink_left == 0 and _hash_uniform(self.seed, f, 1) < 1.0 / (c.blink_every_s * FPS):
            self.blink_left = len(BLINK)
        blink = BLINK[len(BLINK) - self.blink_left] if self.blink_left else 0.0
        self.blink_left = max(self.blink_left - 1, 0)
        # saccades: the gaze jumps to a new random point now and then, and holds it
        if _hash_uniform(self.seed, f, 3) < 1.0 / (c.saccade_every_s * FPS):
            self.gaze = torch.tensor([2 * _hash_uniform(self.seed, f, 4) - 1,
                                      0.5 * (2 * _hash_uniform(self.seed, f, 5) - 1)]) * c.saccade
        # displacements [K_c, 3]
        out = torch.zeros_like(self.rest)
        out[:, 1] += self.jaw_w * c.jaw_open * self.level
        out[self.upper_lip, 1] -= 0.12 * c.jaw_open * self.level
        out[:, 0] += self.corner_w[:, 0] * c.corner_spread * tilt
        out += self.blink_offsets(blink)
        out[self.eyeballs, :2] += self.gaze
        breath = c.breath * 0.5 * (1 - math.cos(2 * math.pi * f / (c.breath_period_s * FPS)))
        out[self.shoulders | self.head | self.hands, 1] -= breath
        out[self.hands, 1] -= self.hand
        out[self.hands, 0] += 0.3 * self.hand * torch.sign(self.rest[self.hands, 0] - self.pivot[0])
        R = _rotation(math.radians(self.nod + 0.5 * c.sway_deg * _smooth_noise(self.seed, f, 0)),
                      math.radians(c.sway_deg * _smooth_noise(self.seed, f, 1)),
                      math.radians(0.6 * c.sway_deg * _smooth_noise(self.seed, f, 2)))
        moved = self.rest[self.head] + out[self.head] - self.pivot
        out[self.head] = (moved @ R.T) + self.pivot - self.rest[self.head]
        self.frame += 1
        return torch.where(self.present[:, None], out, torch.zeros(()))

    def push(self, mel: Tensor, rms: Tensor, visemes: Tensor | None = None) -> Tensor:
        """mel [t, n_mels], rms [t] -> displacements [t, K_c, 3] (face units). visemes [t, V]
        (engine/motion/visemes.py; from timed marks) shape the lips through engine.motion.articulate on the rows
        that are not NaN; the rules themselves do not hear phonemes."""
        if mel.dim() != 2 or rms.shape != (mel.shape[0],):
            raise ValueError(f"mel/rms: expected [t, n_mels] and [t], got {list(mel.shape)} and {list(rms.shape)}")
        frames = [self._step(mel[i], float(rms[i])) for i in range(mel.shape[0])]
        out = torch.stack(frames) if frames else torch.zeros(0, *self.rest.shape)
        return self.articulator.apply_where(out, visemes)

    def __call__(self, mel: Tensor, rms: Tensor, visemes: Tensor | None = None) -> Tensor:
        """Offline: a whole clip from a fresh state."""
        self.reset()
        return self.push(mel, rms, visemes)

