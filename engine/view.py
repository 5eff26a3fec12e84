"""AvatarView: one camera on an avatar. The one render path of the live engine (engine/runtime.py) and of the
distillation (distill/view.py, which adds what training needs: projections, crops, anchors).

    canonical motion [..., K_c, 3] (face units) ─ to_world ─▶ particle motion [..., K, 3] (world units)
    ─ decoder.deform (engine/deform) ─▶ deformed Gaussians ─ stretched skin's splats grow (engine/deform/stretch)
    ─ limb bones turn (engine/avatar/limbs)
    ─ splat (engine/render/splat) ─▶ rgb, alpha

A view is built once per camera and holds what does not change from frame to frame: the Gaussians facing the
camera (`facing` on the rest pose: the motions are small, and a thin shell's back is hidden by its front), as
that camera sees them (their colour away from the photo camera, engine.render.away), with
their skinning, each particle's canonical slot and the avatar's motion unit, the intrinsics for the output size,
and the background. Everything else (the decoder and the motion) comes with each call.
"""
from __future__ import annotations

import torch
from torch import Tensor

from engine.avatar.bundle import Avatar
from engine.avatar.limbs import LimbRig
from engine.avatar.particles import canonical_slots, face_rows, head_roll, motion_scale, slot_index, turn_rows
from engine.deform.decoder import GaussianDecoder
from engine.deform.stretch import FaceStretch
from engine.render.away import seen_from
from engine.render.gaussians import Gaussians
from engine.render.splat import facing, splat

Crop = tuple[int, int, int, int]          # (x0, y0, w, h): a window of the frame, rendered at full resolution


class AvatarView:
    def __init__(self, avatar: Avatar, viewmat: Tensor, K: Tensor, width: int, height: int,
                 background: float | Tensor = 1.0):
        """viewmat [4, 4] world -> camera (OpenCV axes); K [3, 3] for a width x height image; background a grey
        level, or an image [height, width, 3] in [0, 1] composited behind the avatar."""
        if tuple(viewmat.shape) != (4, 4) or tuple(K.shape) != (3, 3):
            raise ValueError(f"viewmat/K: expected [4, 4] and [3, 3], got {list(viewmat.shape)} and {list(K.shape)}")
        if width < 8 or height < 8:
            raise ValueError(f"width/height: expected at least 8 x 8 pixels, got {width} x {height}")
        if isinstance(background, Tensor) and tuple(background.shape) != (height, width, 3):
            raise ValueError(f"background: expected [{height}, {width}, 3], got {list(background.shape)}")
        self.avatar, self.W, self.H = avatar, int(width), int(height)
        self.viewmat, self.K, self.background = viewmat.float().clone(), K.float().clone(), background
        g = avatar.gaussians
        away = avatar.away_colour()
        if away is not None:                                             # as this camera sees them
            g = seen_from(g, away, self.viewmat)
        if avatar.normals is None:                                       # no facing known: keep them all
            self.g0, self.skin_index, self.skin_weight = g, avatar.skin_index, avatar.skin_weight
        else:
            keep = facing(avatar.normals, g.means, self.viewmat).nonzero().squeeze(1)   # [N'] into the avatar
            self.g0 = g.select(keep)
            self.skin_index, self.skin_weight = avatar.skin_index[keep], avatar.skin_weight[keep]
        self.stretch = FaceStretch(avatar.particles, avatar.particle_names, self.skin_index, self.skin_weight)
        self.rig = None                                                  # limb bones: arms and legs turn
        if avatar.bones is not None:
            bones = avatar.bones if avatar.normals is None else avatar.bones[keep]
            self.rig = LimbRig(avatar.particles, avatar.particle_names, self.g0.means, bones) or None
        self.slots = slot_index(avatar.particle_names)                   # [K] canonical slot of each particle
        self.unit = motion_scale(avatar.particles, avatar.particle_names)
        self.roll = head_roll(avatar.particles, avatar.particle_names)   # the face's motion turns with the head
        self.face = face_rows(avatar.particle_names)                     # [K] bool

    @classmethod
    def from_photo(cls, avatar: Avatar, width: int, height: int, background: float | Tensor = 1.0) -> "AvatarView":
        """The camera the photo was taken with, for a width x height image."""
        return cls(avatar, avatar.camera.viewmat, avatar.camera.scaled_K(width, height), width, height, background)

    # ---------------------------------------------------------------------------------------------- motion
    def to_world(self, canonical: Tensor) -> Tensor:
        """Canonical motion [..., K_c, 3] (face units; the face's slots on the level face) -> this avatar's
        particle motion [..., K, 3] (world; the face's turned by the head's roll, engine.avatar.particles)."""
        return turn_rows(canonical[..., self.slots.to(canonical.device), :] * self.unit, self.face, self.roll)

    def to_canonical(self, world: Tensor) -> Tensor:
        """Particle motion [..., K, 3] (world) -> canonical [..., K_c, 3] (face units; absent slots 0)."""
        out = world.new_zeros(*world.shape[:-2], len(canonical_slots()), 3)
        out[..., self.slots, :] = turn_rows(world, self.face, -self.roll) / self.unit
        return out

    # ---------------------------------------------------------------------------------------------- pixels
    def splat(self, decoder: GaussianDecoder, motion: Tensor,
              crop: Crop | None = None) -> tuple[Tensor, Tensor, Gaussians]:
        """Particle motion [K, 3] (world) -> rgb [h, w, 3] (unclamped) over the background, alpha [h, w, 1], and
        the deformed Gaussians [N']. crop: render only that window of the frame (the principal point shifted);
        None = the whole frame. Differentiable in motion and decoder."""
        x0, y0, w, h = crop if crop is not None else (0, 0, self.W, self.H)
        K = self.K
        if crop is not None:
            K = K.clone()
            K[0, 2] -= x0
            K[1, 2] -= y0
        g = decoder.deform(self.g0, self.skin_index, self.skin_weight, motion)
        g = self.stretch.apply(g, motion)                                # stretched skin's splats grow
        if self.rig is not None:
            g = self.rig.apply(g, motion)
        if not isinstance(self.background, Tensor):
            rgb, alpha = splat(g, self.viewmat, K, w, h, self.background)
            return rgb, alpha, g
        rgb, alpha = splat(g, self.viewmat, K, w, h, 0.0)
        return rgb + (1.0 - alpha) * self.background[y0:y0 + h, x0:x0 + w], alpha, g

    def render(self, decoder: GaussianDecoder, motion: Tensor, crop: Crop | None = None) -> dict[str, Tensor]:
        """Particle motion [B, K, 3] (world) -> {"rgb" [B, h, w, 3] (unclamped) over the background,
        "alpha" [B, h, w]}. Differentiable in motion and decoder."""
        rgb, alpha = zip(*(self.splat(decoder, m, crop)[:2] for m in motion))
        return {"rgb": torch.stack(rgb), "alpha": torch.stack(alpha)[..., 0]}
