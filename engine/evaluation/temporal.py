"""Temporal flicker: the mean absolute frame-to-frame difference, in 8-bit levels, over the pixels that are not
moving. A pixel moves between frames t-1 and t where its difference (mean over RGB, of 1.0) exceeds
`threshold`, and so does every pixel within a `dilate` x `dilate` window of one that does. What is left is
the small change a still region should not have: shimmer of splats, noise, compression."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def flicker(frames: np.ndarray, threshold: float = 0.1, dilate: int = 7, batch: int = 32) -> dict:
    """frames [T, H, W, 3] uint8 -> flicker (8-bit levels), the still fraction, and per-pair values [T-1]."""
    if len(frames) < 2:
        return {"flicker": None, "still_fraction": None, "per_pair": [], "note": "fewer than 2 frames"}
    per_pair, still = [], []
    for s in range(1, len(frames), batch):
        cur = torch.from_numpy(np.ascontiguousarray(frames[s:s + batch])).float()
        prev = torch.from_numpy(np.ascontiguousarray(frames[s - 1:s - 1 + len(cur)])).float()
        diff = (cur - prev).abs().mean(-1) / 255.0                                # [B, H, W]
        moving = F.max_pool2d((diff > threshold).float()[:, None], dilate, 1, dilate // 2)[:, 0] > 0
        keep = ~moving
        n = keep.sum((1, 2)).clamp(min=1)
        per_pair += (255.0 * (diff * keep).sum((1, 2)) / n).tolist()
        still += keep.float().mean((1, 2)).tolist()
    return {"flicker": float(np.mean(per_pair)), "still_fraction": float(np.mean(still)), "per_pair": per_pair}
