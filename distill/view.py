"""The personalised avatar as the distillation stages see it: the photo camera at the teacher's frame size.

    canonical motion [B, K_c, 3] (face units) ─ to_world ─▶ particle motion [B, K, 3] (world units)
    ─ AvatarView.splat (engine/view.py, the live engine's render path) ─▶ RGB [B, h, w, 3]
    over a white background (as the engine renders; compare inside the person's mask), alpha [B, h, w], for the
    whole frame or a crop of it at full resolution (the face box: the photometric losses look at the face
    closely without paying for the whole frame; rendering the avatar smaller than it was fitted would alias)
    + the projected centres of the anchor Gaussians [B, P, 2] (one per particle: the Gaussian nearest to it at
      rest), compared with the teacher video's 2-D tracks by the trajectory loss.

Pixel coordinates follow gsplat and mediapipe: pixel centres at +0.5, so scaling an image scales them exactly.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from engine.avatar.bundle import Avatar
from engine.avatar.knn import knn
from engine.deform.decoder import GaussianDecoder
from engine.view import AvatarView, Crop


class TeacherView(AvatarView):
    def __init__(self, avatar: Avatar, size: tuple[int, int], background: np.ndarray | Tensor | None = None):
        """size (H, W) of the teacher frames; background [H, W, 3] (uint8 or float) behind the avatar, or None
        for white, the live engine's background and the one the avatar was fitted on (engine/avatar/personalize)."""
        H, W = size
        if H < 8 or W < 8:
            raise ValueError(f"size: expected at least 8 x 8 pixels, got {size}")
        bg = torch.ones(int(H), int(W), 3)
        if background is not None:
            bg = torch.as_tensor(np.array(background))
            if tuple(bg.shape) != (H, W, 3):
                raise ValueError(f"background: expected [{H}, {W}, 3], got {list(bg.shape)}")
            bg = bg.float() / 255.0 if bg.dtype == torch.uint8 else bg.float()
        cam = avatar.camera
        super().__init__(avatar, cam.viewmat, cam.scaled_K(int(W), int(H)), int(W), int(H), bg)
        self.anchors = knn(avatar.particles.float(), self.g0.means.float(), 1)[1][:, 0]   # [K] into g0

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

    # ------------------------------------------------------------------------------------------ rendering
    def face_box(self, pad: float = 0.25) -> Crop:
        """(x0, y0, w, h): the box around the face particles (face, lips, eyes regions), grown by `pad` of its
        size on every side, with even sides, inside the frame. The whole frame when the avatar has no face."""
        from engine.avatar.regions import EYES, FACE, LIPS
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

    def render(self, decoder: GaussianDecoder, motion: Tensor, crop: Crop | None = None,
               points: Tensor | None = None) -> dict[str, Tensor]:
        """AvatarView.render's {"rgb" [B, h, w, 3], "alpha" [B, h, w]} for particle motion [B, K, 3] (world), and
        "anchors" [B, K, 2] (pixels in the whole frame), and with points (indices [M] into the culled Gaussians)
        "points" [B, M, 3], their deformed centres}. crop (x0, y0, w, h): render only that window of the
        frame, at full resolution; None = the whole frame. Differentiable in motion and decoder."""
        out: dict[str, list] = {"rgb": [], "alpha": [], "anchors": [], "points": []}
        for m in motion:
            rgb, alpha, g = self.splat(decoder, m, crop)
            out["rgb"].append(rgb)
            out["alpha"].append(alpha[..., 0])
            out["anchors"].append(self.project(g.means[self.anchors]))
            if points is not None:
                out["points"].append(g.means[points])
        return {k: torch.stack(v) for k, v in out.items() if v}


def crop_frames(frames: Tensor, crop: Crop | None) -> Tensor:
    """frames [B, H, W, C] -> the crop window [B, h, w, C] (None: unchanged)."""
    if crop is None:
        return frames
    x0, y0, w, h = crop
    return frames[:, y0:y0 + h, x0:x0 + w]
