"""The personalised avatar as the distillation stages see it: the photo camera at the teacher's frame size.

    canonical motion [B, K_c, 3] (face units) ─ to_world ─▶ particle motion [B, K, 3] (world units)
    ─ GaussianDecoder.deform (engine/decoder) ─▶ deformed Gaussians ─ cuda_ext.rasterization ─▶ RGB [B, h, w, 3]
    over a white background (as the engine renders; compare inside the person's mask), alpha [B, h, w], for the
    whole frame or a crop of it at full resolution (the face box: the photometric losses look at the face
    closely without paying for the whole frame; rendering the avatar smaller than it was fitted would alias)
    + the projected centres of the anchor Gaussians [B, P, 2] (one per particle: the Gaussian nearest to it at
      rest), compared with the teacher video's 2-D tracks by the trajectory loss.

Pixel coordinates follow gsplat and mediapipe: pixel centres at +0.5, so scaling an image scales them exactly.
Gaussians facing away from the photo camera are culled once (engine.render.facing), as the live engine does.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

import cuda_ext
from engine.avatar import Avatar
from engine.decoder import GaussianDecoder
from engine.gaussians import Gaussians
from engine.knn import knn
from engine.particles import motion_scale, slot_index
from engine.render import facing


class AvatarView:
    def __init__(self, avatar: Avatar, size: tuple[int, int], background: np.ndarray | Tensor | None = None):
        """size (H, W) of the teacher frames; background [H, W, 3] (uint8 or float) behind the avatar, or None
        for white, the live engine's background and the one the avatar was fitted on (engine/personalize)."""
        H, W = size
        if H < 8 or W < 8:
            raise ValueError(f"size: expected at least 8 x 8 pixels, got {size}")
        self.avatar, self.H, self.W = avatar, int(H), int(W)
        cam = avatar.camera
        self.K = cam.K.clone().float()
        self.K[0] *= W / cam.width
        self.K[1] *= H / cam.height
        self.viewmat = cam.viewmat.clone().float()
        g = avatar.gaussians
        keep = (facing(avatar.normals, g.means, self.viewmat) if avatar.normals is not None
                else torch.ones(len(g), dtype=torch.bool)).nonzero().squeeze(1)
        self.g0 = Gaussians(g.means[keep], g.quats[keep], g.scales[keep], g.opacities[keep], g.sh[keep])
        self.skin_index, self.skin_weight = avatar.skin_index[keep], avatar.skin_weight[keep]
        self.slots = slot_index(avatar.particle_names)                   # [K] canonical slot of each particle
        self.unit = motion_scale(avatar.particles, avatar.particle_names)
        self.anchors = knn(avatar.particles.float(), self.g0.means.float(), 1)[1][:, 0]   # [K] into g0
        if background is None:
            self.background = torch.ones(H, W, 3)
        else:
            bg = torch.as_tensor(np.array(background))
            if tuple(bg.shape) != (H, W, 3):
                raise ValueError(f"background: expected [{H}, {W}, 3], got {list(bg.shape)}")
            self.background = bg.float() / 255.0 if bg.dtype == torch.uint8 else bg.float()

    # ------------------------------------------------------------------------------------------ geometry
    def project(self, points: Tensor) -> Tensor:
        """World points [..., 3] -> pixels [..., 2] in this view."""
        R, t = self.viewmat[:3, :3].to(points), self.viewmat[:3, 3].to(points)
        c = points @ R.T + t
        K = self.K.to(points)
        return torch.stack([K[0, 0] * c[..., 0] / c[..., 2] + K[0, 2], K[1, 1] * c[..., 1] / c[..., 2] + K[1, 2]], -1)

    def particle_pixels(self) -> Tensor:
        """Rest particles projected [K, 2]: where the tracker starts in the teacher's reference."""
        return self.project(self.avatar.particles.float())

    def lift(self, displacement_px: Tensor) -> Tensor:
        """Pixel displacements [T, K, 2] of the particles -> world displacements [T, K, 3], each in the plane
        through the particle parallel to the image (depth unchanged: a single view cannot see it)."""
        R, t = self.viewmat[:3, :3], self.viewmat[:3, 3]
        z = (self.avatar.particles.float() @ R.T + t)[:, 2]                      # [K] camera depth
        dc = torch.stack([displacement_px[..., 0] * z / self.K[0, 0], displacement_px[..., 1] * z / self.K[1, 1],
                          torch.zeros_like(displacement_px[..., 0])], -1)       # camera axes
        return dc @ R                                                           # R^T applied to row vectors

    def to_world(self, canonical: Tensor) -> Tensor:
        """Canonical motion [..., K_c, 3] (face units) -> this avatar's particle motion [..., K, 3] (world)."""
        return canonical[..., self.slots.to(canonical.device), :] * self.unit

    def to_canonical(self, world: Tensor) -> Tensor:
        """Particle motion [..., K, 3] (world) -> canonical [..., K_c, 3] (face units; absent slots 0)."""
        from engine.particles import canonical_slots
        out = world.new_zeros(*world.shape[:-2], len(canonical_slots()), 3)
        out[..., self.slots, :] = world / self.unit
        return out

    # ------------------------------------------------------------------------------------------ rendering
    def face_box(self, pad: float = 0.25) -> tuple[int, int, int, int]:
        """(x0, y0, w, h): the box around the face particles (face, lips, eyes regions), grown by `pad` of its
        size on every side, with even sides, inside the frame. The whole frame when the avatar has no face."""
        from engine.regions import EYES, FACE, LIPS
        face = torch.isin(self.avatar.particle_regions, torch.tensor([FACE, LIPS, EYES]))
        if not bool(face.any()):
            return 0, 0, self.W, self.H
        px = self.particle_pixels()[face]
        lo, hi = px.min(0).values, px.max(0).values
        grow = (hi - lo) * pad
        x0, y0 = (lo - grow).floor().clamp_min(0).long().tolist()
        x1, y1 = (hi + grow).ceil().long().tolist()
        x1, y1 = min(x1, self.W), min(y1, self.H)
        w, h = (x1 - x0) // 2 * 2, (y1 - y0) // 2 * 2
        return int(x0), int(y0), max(w, 2), max(h, 2)

    def render(self, decoder: GaussianDecoder, motion: Tensor, crop: tuple[int, int, int, int] | None = None,
               points: Tensor | None = None) -> dict[str, Tensor]:
        """Particle motion [B, K, 3] (world) -> {"rgb" [B, h, w, 3] over the background, "alpha" [B, h, w],
        "anchors" [B, K, 2] (pixels in the whole frame), and with points (indices [M] into the culled Gaussians)
        "points" [B, M, 3], their deformed centres}. crop (x0, y0, w, h): render only that window of the
        frame, at full resolution (the camera's principal point shifted); None = the whole frame.
        Differentiable in motion and decoder."""
        x0, y0, w, h = crop if crop is not None else (0, 0, self.W, self.H)
        K = self.K.clone()
        K[0, 2] -= x0
        K[1, 2] -= y0
        bg = self.background[y0:y0 + h, x0:x0 + w]
        out: dict[str, list] = {"rgb": [], "alpha": [], "anchors": [], "points": []}
        for m in motion:
            g = decoder.deform(self.g0, self.skin_index, self.skin_weight, m)
            rgb, alpha, _ = cuda_ext.rasterization(g.means, g.quats, g.scales, g.opacities, g.sh, self.viewmat[None],
                                                   K[None], w, h, sh_degree=g.sh_degree,
                                                   backgrounds=torch.zeros(1, 3))
            out["rgb"].append(rgb[0] + (1.0 - alpha[0]) * bg)
            out["alpha"].append(alpha[0, ..., 0])
            out["anchors"].append(self.project(g.means[self.anchors]))
            if points is not None:
                out["points"].append(g.means[points])
        return {k: torch.stack(v) for k, v in out.items() if v}


def crop_frames(frames: Tensor, crop: tuple[int, int, int, int] | None) -> Tensor:
    """frames [B, H, W, C] -> the crop window [B, h, w, C] (None: unchanged)."""
    if crop is None:
        return frames
    x0, y0, w, h = crop
    return frames[:, y0:y0 + h, x0:x0 + w]
