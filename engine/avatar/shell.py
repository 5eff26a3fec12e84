"""Initial Gaussians for a photographed person: a front and a back shell over the silhouette.

The front shell has a Gaussian on every pixel where `fine` is set and on every `stride`-th pixel elsewhere
(dense face and hands, sparse body). The back shell is sparser (back_fine_stride, back_stride): it only carries a
blur, and fewer Gaussians render faster. They are placed through the photo camera (world = camera frame:
viewmat identity, +z forward) at depth z0 - front and z0 + back, where front and back are surface depths in
pixels (engine.avatar.depth), converted to world units at z0. Front colours come from the photo; the back takes a
heavily blurred copy (a plausible fill for the unseen side). The photometric fit in personalize refines the
front shell.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.render.gaussians import Gaussians, rgb_to_sh_dc


@dataclass
class ShellConfig:
    z0: float = 2.5            # distance of the person from the camera (world units)
    thickness: float = 0.6     # body relief scale: 1 makes a disc silhouette a sphere (engine.avatar.depth)
    head_roundness: float = 0.9  # head depth as a share of a ball of the head's width (engine.avatar.depth)
    stride: int = 2            # front body sampling step in pixels (face and hands: every pixel)
    back_stride: int = 4       # the hidden back shell is a blur: sparser (body) ...
    back_fine_stride: int = 4  # ... and (face, hands): as sparse, so the back of the head is even
    footprint: float = 0.6     # Gaussian sigma as a fraction of the sample spacing
    opacity: float = 0.95
    back_blur: float = 12.0    # blur (pixels) of the photo colours used for the back shell


def _blur(image: Tensor, mask: Tensor, sigma: float) -> Tensor:
    """Normalised Gaussian blur of image [H, W, 3] restricted to mask [H, W] (colours do not bleed in)."""
    r = int(3 * sigma)
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    def sep(t):  # t [C, H, W]
        t = F.conv2d(F.pad(t[:, None], (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
        return F.conv2d(F.pad(t, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))[:, 0]
    m = mask.float()[None]
    num = sep(image.permute(2, 0, 1) * m)
    den = sep(m).clamp(min=1e-6)
    return (num / den).permute(1, 2, 0)


def _samples(mask: Tensor, fine: Tensor, fine_step: int, coarse_step: int) -> tuple[Tensor, Tensor, Tensor]:
    """Pixels to place Gaussians on: every fine_step-th pixel in `fine`, every coarse_step-th elsewhere in
    `mask` (both [H, W] bool). -> ys [M], xs [M], the sample spacing [M] (pixels)."""
    H, W = mask.shape
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    on = lambda step: (yy % step == 0) & (xx % step == 0)             # noqa: E731
    keep = mask & ((fine & on(fine_step)) | (~fine & on(coarse_step)))
    ys, xs = yy[keep], xx[keep]
    if ys.numel() == 0:
        raise ValueError("mask: no pixel to place Gaussians on")
    spacing = torch.where(fine[ys, xs], float(fine_step), float(coarse_step))
    return ys, xs, spacing


def build_shells(image: Tensor, mask: Tensor, depth: tuple[Tensor, Tensor], K: Tensor,
                 fine: Tensor | None = None, cfg: ShellConfig = ShellConfig()) -> tuple[Gaussians, Tensor, Tensor]:
    """image [H, W, 3] in [0, 1], mask [H, W] bool, depth = (front [H, W], back [H, W]) in pixels,
    K [3, 3] the photo's intrinsics, fine [H, W] bool (pixels sampled densely).
    -> (Gaussians [N], pixel [N, 2] (x, y) each came from, is_front [N] bool; the front shell comes first)."""
    H, W = mask.shape
    front, back = depth
    if image.shape != (H, W, 3) or front.shape != (H, W) or back.shape != (H, W):
        raise ValueError(f"image/depth: expected [{H}, {W}, 3] and two [{H}, {W}], got {list(image.shape)}, "
                         f"{list(front.shape)}, {list(back.shape)}")
    fine = torch.zeros_like(mask) if fine is None else fine
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    world_per_px = cfg.z0 / fx
    blurred = _blur(image, mask, cfg.back_blur)
    shells = []
    for side, (fine_step, coarse_step) in enumerate(((1, cfg.stride), (cfg.back_fine_stride, cfg.back_stride))):
        ys, xs, spacing = _samples(mask, fine, fine_step, coarse_step)
        dz, colors = (-front[ys, xs], image[ys, xs]) if side == 0 else (back[ys, xs], blurred[ys, xs])
        z = cfg.z0 + dz * world_per_px
        means = torch.stack([(xs + 0.5 - cx) / fx * z, (ys + 0.5 - cy) / fy * z, z], -1)
        sigma = cfg.footprint * spacing * z / fx
        scales = torch.stack([sigma, sigma, 0.3 * sigma], -1)
        shells.append((means, scales, colors, torch.stack([xs, ys], -1), torch.full((len(xs),), side == 0)))
    means, scales, colors, pixel, is_front = (torch.cat(parts) for parts in zip(*shells))
    n = means.shape[0]
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(n, 4).contiguous()
    sh = rgb_to_sh_dc(colors)[:, None, :].contiguous()
    g = Gaussians(means.float(), quats, scales.float(), torch.full((n,), cfg.opacity), sh.float())
    return g, pixel, is_front
