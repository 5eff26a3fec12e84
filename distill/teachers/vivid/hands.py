"""Sparse hand poses for VividAnimator (WACV 2026): keypoints -> heatmaps, boxes, region masks and HCC crops.

Hand poses are keypoints [T, 2, 21, 2]: per frame, the left then the right hand, 21 joints each (the usual hand
layout: wrist, then 4 joints per finger), (x, y) as fractions of the frame width and height; NaN marks a hand or
joint that is not seen.
- `hand_heatmaps`: one Gaussian per joint, max over the joints of a hand -> 2 channels (left, right), the input of
  the light conv hand encoder (`make_hand_encoder`: the shared PoseEncoder, sd_video/pose.py, with 2 input
  channels).
- `hand_boxes`: the keypoint extent of each hand, grown by a margin on every side and made square.
- `box_mask`: the union of boxes on a grid (pixel centres inside a box are 1): M_hand from the hand boxes, and
  M_head from a head box.
- `crop_boxes`: bilinear crops of the reference image at boxes, resized to the HCC crop size (an unseen hand gives
  a black crop; its region mask is empty, so its codes change nothing).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from distill.teachers.sd_video.pose import PoseEncoder

HAND_JOINTS = 21


def check_hand_keypoints(hand_poses, num_frames: int) -> Tensor:
    """hand_poses [T >= num_frames, 2, 21, 2] (array or tensor) -> float tensor [num_frames, 2, 21, 2]."""
    p = hand_poses if isinstance(hand_poses, Tensor) else torch.from_numpy(np.asarray(hand_poses, dtype=np.float32))
    if p.dim() != 4 or p.shape[1:] != (2, HAND_JOINTS, 2) or p.shape[0] < num_frames:
        raise ValueError(f"hand_poses: expected keypoints [T >= {num_frames}, 2 (left, right), {HAND_JOINTS}, 2 (x, y "
                         f"as frame fractions)], got {list(p.shape)}")
    return p[:num_frames].float()


def hand_heatmaps(keypoints: Tensor, height: int, width: int, sigma: float) -> Tensor:
    """keypoints [F, 2, 21, 2] -> heatmaps [2, F, height, width] in [0, 1]; sigma: a fraction of the width."""
    f = keypoints.shape[0]
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width
    kp = keypoints.float().cpu()
    dx = (xs.view(1, 1, 1, 1, width) - kp[..., 0, None, None]) * width      # [F, 2, 21, 1, W] pixels
    dy = (ys.view(1, 1, 1, height, 1) - kp[..., 1, None, None]) * height    # [F, 2, 21, H, 1]
    s = sigma * width
    g = torch.exp(-(dx ** 2 + dy ** 2) / (2 * s * s))                       # [F, 2, 21, H, W]
    g = torch.nan_to_num(g, nan=0.0).amax(dim=2)                             # unseen joints draw nothing
    return g.permute(1, 0, 2, 3).reshape(2, f, height, width)


def hand_boxes(keypoints: Tensor, margin: float) -> Tensor:
    """keypoints [..., 2, 21, 2] -> square boxes [..., 2, 4] (x0, y0, x1, y1) in frame fractions; NaN if unseen."""
    x, y = keypoints[..., 0], keypoints[..., 1]
    big = torch.full_like(x, float("inf"))
    x0 = torch.where(torch.isnan(x), big, x).amin(-1)
    x1 = torch.where(torch.isnan(x), -big, x).amax(-1)
    y0 = torch.where(torch.isnan(y), big, y).amin(-1)
    y1 = torch.where(torch.isnan(y), -big, y).amax(-1)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = torch.maximum(x1 - x0, y1 - y0) * (0.5 + margin)
    box = torch.stack([cx - half, cy - half, cx + half, cy + half], dim=-1)
    seen = torch.isfinite(box).all(-1, keepdim=True)
    return torch.where(seen, box, torch.full_like(box, float("nan")))


def box_mask(boxes: Tensor, height: int, width: int) -> Tensor:
    """boxes [F, K, 4] (frame fractions; NaN rows ignored) -> union mask [F, height, width] of 0/1."""
    ys = ((torch.arange(height, dtype=torch.float32) + 0.5) / height).view(1, 1, height, 1)
    xs = ((torch.arange(width, dtype=torch.float32) + 0.5) / width).view(1, 1, 1, width)
    b = boxes.float().cpu()[..., None, None]                                  # [F, K, 4, 1, 1]
    inside = (xs >= b[:, :, 0]) & (xs < b[:, :, 2]) & (ys >= b[:, :, 1]) & (ys < b[:, :, 3])   # NaN -> False
    return inside.any(dim=1).float()


def crop_boxes(image: Tensor, boxes: Tensor, size: int) -> Tensor:
    """image [B, 3, H, W], boxes [B, 2, 4] (frame fractions) -> crops [B, 2, 3, size, size] (NaN box: black)."""
    if image.dim() != 4 or boxes.shape != (image.shape[0], 2, 4):
        raise ValueError(f"boxes: expected [{image.shape[0]}, 2, 4] for image {list(image.shape)}, "
                         f"got {list(boxes.shape)}")
    b = image.shape[0]
    seen = torch.isfinite(boxes).all(-1)                                      # [B, 2]
    bx = torch.nan_to_num(boxes.to(image.device, torch.float32), nan=0.0)
    t = (torch.arange(size, device=image.device, dtype=torch.float32) + 0.5) / size        # [S]
    gx = bx[..., 0, None] + (bx[..., 2, None] - bx[..., 0, None]) * t                       # [B, 2, S]
    gy = bx[..., 1, None] + (bx[..., 3, None] - bx[..., 1, None]) * t
    grid = torch.stack([gx[:, :, None, :].expand(b, 2, size, size), gy[:, :, :, None].expand(b, 2, size, size)],
                       dim=-1) * 2 - 1                                        # [B, 2, S, S, 2] in grid_sample units
    src = image.float().repeat_interleave(2, dim=0)
    crops = F.grid_sample(src, grid.reshape(b * 2, size, size, 2), mode="bilinear", padding_mode="zeros",
                          align_corners=False).reshape(b, 2, 3, size, size)
    black = torch.full_like(crops, -1.0)
    return torch.where(seen.to(image.device)[..., None, None, None], crops, black).to(image.dtype)


def make_hand_encoder(cfg) -> PoseEncoder:
    """The light conv hand encoder: heatmaps [B, 2, F, H, W] -> features [B, C0, F, H/8, W/8] (zero at init)."""
    return PoseEncoder(cfg.block_out_channels[0], conditioning_channels=cfg.hand_channels,
                       block_out_channels=cfg.hand_block_out_channels)
