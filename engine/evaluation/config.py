"""EvalConfig (configs/eval.yaml): how much of a clip each measure looks at, and its thresholds."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EvalConfig:
    """configs/eval.yaml"""
    max_lag: int = 15                  # lip sync: lags searched, in frames either way (0.6 s at 25 fps)
    identity_stride: int = 5           # identity: every n-th frame (dlib's detector is ~0.2 s a 512 px frame)
    piqe_stride: int = 5               # PIQE: every n-th frame
    hands_stride: int = 1              # hands: every n-th frame (each searched afresh: engine/evaluation/hands.py)
    flicker_threshold: float = 0.1     # temporal: a pixel changing more than this (of 1.0) between frames moves
    flicker_dilate: int = 7            # ... and so do its neighbours within this window (odd, pixels)
    contact_sheet_frames: int = 8      # report: frames shown on the contact sheet
    size: int = 512                    # an avatar folder is rendered at size x size
    motion: str = "learned"            # an avatar folder is driven by this motion source (or "procedural")

    def __post_init__(self):
        for name in ("max_lag", "identity_stride", "piqe_stride", "hands_stride", "contact_sheet_frames"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
        if not 0 < self.flicker_threshold < 1:
            raise ValueError(f"flicker_threshold: expected a value in (0, 1), got {self.flicker_threshold}")
        if self.flicker_dilate < 1 or self.flicker_dilate % 2 == 0:
            raise ValueError(f"flicker_dilate: expected an odd int >= 1, got {self.flicker_dilate}")
        if self.size < 16 or self.size % 2:
            raise ValueError(f"size: expected an even int >= 16, got {self.size}")
        if self.motion not in ("learned", "procedural"):
            raise ValueError(f"motion: expected 'learned' or 'procedural', got {self.motion!r}")
