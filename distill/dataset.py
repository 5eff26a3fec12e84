"""The training set of one distillation run: per teacher clip, everything the stages read, aligned at 25 fps.

    ClipTensors       mel [T, 80] + rms [T] (engine.audio.features, from the clip's 16 kHz audio)
                      motion [T, K_c, 3] face units + slot_mask [K_c]  (fit4d's pseudo ground truth)
                      tracks [T, K, 2] pixels + valid [T, K]            (distill/tracks.py, the avatar's particles)
                      frames [T, H, W, 3] uint8                          (the teacher video, memory-mapped)
                      audio [S] 16 kHz                                   (for a diffusion teacher's conditions)
    Windows           (clip, start) pairs of `length` consecutive frames, every length // 4 frames; a stage's
                      batch_fn turns a step into window indices with distill.checkpoint.batch_indices

The audio encoder is causal with a finite receptive field and starts each clip from silence, as the live
engine starts a stream, so features are computed over the whole clip and then cut to the window
(`encode_windows`): training sees exactly the features the engine computes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn


@dataclass
class ClipTensors:
    id: str
    mel: Tensor                 # [T, 80]
    rms: Tensor                 # [T]
    motion: Tensor              # [T, K_c, 3]
    slot_mask: Tensor           # [K_c] bool
    tracks: Tensor              # [T, K, 2]
    valid: Tensor               # [T, K] bool
    frames: np.ndarray          # [T, H, W, 3] uint8
    audio: Tensor               # [S] 16 kHz, S = 640 T (diffusion teachers' score conditions)

    @property
    def T(self) -> int:
        return int(self.mel.shape[0])


class Windows:
    """Every `length`-frame window of the clips, starting every max(1, length // 4) frames (the last window of a
    clip ends at its last frame). Clips shorter than `length` give none."""

    def __init__(self, clips: list[ClipTensors], length: int):
        if length < 1:
            raise ValueError(f"length: expected >= 1, got {length}")
        self.clips, self.length = clips, length
        self.items: list[tuple[int, int]] = []
        for c, clip in enumerate(clips):
            if clip.T < length:
                continue
            starts = list(range(0, clip.T - length + 1, max(1, length // 4)))
            if starts[-1] != clip.T - length:
                starts.append(clip.T - length)
            self.items += [(c, s) for s in starts]
        if not self.items:
            raise ValueError(f"clips: none is at least {length} frames ({length / 25:.2f} s) long; "
                             f"lengths: {[clip.T for clip in clips]}")

    def __len__(self) -> int:
        return len(self.items)

    def motion(self, index: list[int]) -> tuple[Tensor, Tensor]:
        """-> (motion [B, L, K_c, 3], slot_mask [B, K_c])."""
        L = self.length
        m = torch.stack([self.clips[c].motion[s:s + L] for c, s in (self.items[i] for i in index)])
        mask = torch.stack([self.clips[self.items[i][0]].slot_mask for i in index])
        return m, mask

    def starts(self, index: list[int]) -> Tensor:
        return torch.tensor([self.items[i][1] for i in index], dtype=torch.long)


def encode_windows(encoder: nn.Module, windows: Windows, index: list[int]) -> Tensor:
    """The audio encoder over each needed clip from its start, cut to the windows -> features [B, L, D]."""
    L = windows.length
    cache: dict[int, Tensor] = {}
    out = []
    for i in index:
        c, s = windows.items[i]
        if c not in cache:
            cache[c] = encoder(windows.clips[c].mel[None])[0]                       # [T, D]
        out.append(cache[c][s:s + L])
    return torch.stack(out)
