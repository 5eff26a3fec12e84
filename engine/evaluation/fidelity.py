"""Fidelity: PSNR, SSIM and MS-SSIM of the clip against a teacher video (torchmetrics' functional metrics,
data range 1, frames paired by index over the shorter of the two), and PIQE, a no-reference quality score
(pypiqe; 0-100, lower is better), on every n-th frame of the clip."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

# torchmetrics' MS-SSIM: 5 scales with an 11-pixel Gaussian window need a side > (11 - 1) * 2^4 = 160.
MS_SSIM_MIN_SIDE = 161


def _batch(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0


def _resized(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """frames [T, h, w, 3] -> [T, H, W, 3] with size = (H, W), bilinear."""
    if frames.shape[1:3] == size:
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize(size[::-1], Image.BILINEAR)) for f in frames])


def against_teacher(frames: np.ndarray, teacher: np.ndarray, batch: int = 16, progress: bool = False) -> dict:
    """frames [T, H, W, 3], teacher [T', h, w, 3] uint8 (resized to H x W if needed) -> mean and per-frame
    PSNR / SSIM / MS-SSIM over the first min(T, T') frames."""
    from torchmetrics.functional.image import (multiscale_structural_similarity_index_measure as ms_ssim,
                                               peak_signal_noise_ratio as psnr,
                                               structural_similarity_index_measure as ssim)

    n = min(len(frames), len(teacher))
    notes = []
    if len(frames) != len(teacher):
        notes.append(f"frame counts differ ({len(frames)} vs teacher {len(teacher)}): the first {n} compared")
    if teacher.shape[1:3] != frames.shape[1:3]:
        notes.append(f"teacher resized from {teacher.shape[2]}x{teacher.shape[1]} to "
                     f"{frames.shape[2]}x{frames.shape[1]}")
    with_ms = min(frames.shape[1:3]) >= MS_SSIM_MIN_SIDE
    if not with_ms:
        notes.append(f"MS-SSIM skipped: frames smaller than {MS_SSIM_MIN_SIDE} px on a side")
    per = {"psnr": [], "ssim": [], "ms_ssim": []}
    for s in tqdm(range(0, n, batch), desc="fidelity (torchmetrics)", unit="batch", disable=not progress):
        e = min(s + batch, n)
        a = _batch(frames[s:e])
        b = _batch(_resized(teacher[s:e], frames.shape[1:3]))
        per["psnr"] += psnr(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3)).tolist()
        per["ssim"] += ssim(a, b, data_range=1.0, reduction="none").tolist()
        if with_ms:
            per["ms_ssim"] += ms_ssim(a, b, data_range=1.0, reduction="none").tolist()
    out = {"frames_compared": n, "notes": notes, "per_frame": per,
           "psnr": float(np.mean(per["psnr"])), "ssim": float(np.mean(per["ssim"])),
           "ms_ssim": float(np.mean(per["ms_ssim"])) if with_ms else None}
    return out


def piqe_scores(frames: np.ndarray, stride: int = 5, progress: bool = False) -> dict:
    """PIQE of every n-th frame [T, H, W, 3] uint8 (pypiqe) -> mean and per-frame scores."""
    from pypiqe import piqe

    index = list(range(0, len(frames), stride))
    scores = [float(piqe(np.ascontiguousarray(frames[i]))[0])
              for i in tqdm(index, desc="PIQE", unit="frame", disable=not progress)]
    return {"frames": index, "per_frame": scores, "mean": float(np.mean(scores))}
