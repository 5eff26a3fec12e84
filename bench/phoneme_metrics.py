"""The phoneme-level figures of issue 19, from face-mesh landmarks of rendered frames and a phoneme timeline.

Everything is measured in eye widths: the unit is the clip's median distance between the outer eye corners
(face mesh points 33 and 263). Per frame (`frame_measures`, landmarks [T, 478, 3] pixels, NaN where no face):
    gap       inner-lip gap, |p13 - p14|                                    [T]
    width     mouth width, |p61 - p291|                                     [T]
    openness  eye openness, (|p159 - p145| + |p386 - p374|) / 2             [T]
    nose      nose tip p1, x and y                                          [T, 2]
Frame i shows the audio [i / fps, (i + 1) / fps) (engine.runtime.Frame), so a phoneme [start, end) covers the
frames floor(start * fps) .. ceil(end * fps) - 1; its middle frame is floor((start + end) / 2 * fps).

The bars (issue 19):
    closure_rate   share of bilabials whose gap gets <= 20% of the clip's 90th-percentile gap on some frame of
                   the phoneme, +-1 frame (espeak puts a stop's event at its release, the closure is the
                   ~50 ms before it: the -1 frame)                                        bar >= 0.80
    gap_ratio      median gap at bilabials / at open vowels (middle frames)                 bar <= 0.35
    width_ratio    median mouth width at rounded / at spread vowels (middle frames)         bar <= 0.95
    blinks         runs of frames with openness <= 30% of the clip's median openness;
                   per 10 s                                                                 bar 1.5 .. 5
    nose_std       sqrt(var x + var y) of the nose tip, i.e. its RMS distance from its mean  bar >= 0.05
"""
from __future__ import annotations

import math

import numpy as np

FPS = 25
BARS = {"closure_rate": (">=", 0.80), "gap_ratio": ("<=", 0.35), "width_ratio": ("<=", 0.95),
        "blinks_per_10s": ("in", (1.5, 5.0)), "nose_std": (">=", 0.05)}


def _dist(lm: np.ndarray, a: int, b: int) -> np.ndarray:
    return np.linalg.norm(lm[:, a, :2] - lm[:, b, :2], axis=-1)


def frame_measures(landmarks: np.ndarray) -> dict:
    """landmarks [T, 478, 3] (pixels; NaN rows where the mesh found no face) -> gap, width, openness [T],
    nose [T, 2], all in eye widths, and `unit` (the eye width in pixels). ValueError for a bad shape or no face."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (478, 3):
        raise ValueError(f"landmarks: expected [T, 478, 3], got {list(lm.shape)}")
    eye = _dist(lm, 33, 263)
    if not np.isfinite(eye).any():
        raise ValueError("landmarks: no frame has a face (all NaN)")
    unit = float(np.nanmedian(eye))
    return {"gap": _dist(lm, 13, 14) / unit, "width": _dist(lm, 61, 291) / unit,
            "openness": (_dist(lm, 159, 145) + _dist(lm, 386, 374)) / 2 / unit,
            "nose": lm[:, 1, :2] / unit, "unit": unit}


def phoneme_frames(start: float, end: float, n_frames: int, pad: int = 0, fps: int = FPS) -> np.ndarray:
    """Frame indices a phoneme [start, end) seconds covers, widened by pad frames each side, inside [0, n_frames)."""
    first = math.floor(start * fps) - pad
    last = max(math.ceil(end * fps) - 1, math.floor(start * fps)) + pad
    return np.arange(max(first, 0), min(last, n_frames - 1) + 1)


def middle_frame(start: float, end: float, fps: int = FPS) -> int:
    return math.floor((start + end) / 2 * fps)


def _middles(values: np.ndarray, intervals) -> np.ndarray:
    idx = [middle_frame(s, e) for s, e in intervals]
    return np.array([values[i] for i in idx if 0 <= i < values.shape[0]], dtype=np.float64)


def closure_rate(gap: np.ndarray, bilabials, frac: float = 0.2, pct: float = 90.0, pad: int = 1) -> float:
    """gap [T]; bilabials [(start_s, end_s), ...]. Share of them whose gap falls to <= frac * the pct-th
    percentile of the whole clip's gap on some frame of the phoneme +- pad frames. NaN when there are none."""
    closed = closures(gap, bilabials, frac, pct, pad)
    return float(np.mean(closed)) if closed.size else math.nan


def closures(gap: np.ndarray, bilabials, frac: float = 0.2, pct: float = 90.0, pad: int = 1) -> np.ndarray:
    """[n] bool: for each bilabial, whether it closes (see closure_rate)."""
    gap = np.asarray(gap, dtype=np.float64)
    limit = frac * np.nanpercentile(gap, pct)
    out = []
    for s, e in bilabials:
        g = gap[phoneme_frames(s, e, gap.shape[0], pad)]
        out.append(bool(np.isfinite(g).any() and np.nanmin(g) <= limit))
    return np.array(out, dtype=bool)


def median_ratio(values: np.ndarray, num_intervals, den_intervals) -> float:
    """median of values [T] at the middle frames of num_intervals / the same at den_intervals (NaN if either
    set is empty or its median is 0): gap_ratio (bilabial / open) and width_ratio (rounded / spread)."""
    num, den = _middles(values, num_intervals), _middles(values, den_intervals)
    num, den = num[np.isfinite(num)], den[np.isfinite(den)]
    if not num.size or not den.size or np.median(den) == 0:
        return math.nan
    return float(np.median(num) / np.median(den))


def count_blinks(openness: np.ndarray, frac: float = 0.3) -> int:
    """Runs of consecutive frames with openness [T] <= frac * its median (NaN frames count as open)."""
    o = np.asarray(openness, dtype=np.float64)
    shut = np.nan_to_num(o, nan=np.inf) <= frac * np.nanmedian(o)
    return int(np.count_nonzero(shut[1:] & ~shut[:-1]) + shut[0]) if shut.size else 0


def nose_std(nose: np.ndarray) -> float:
    """nose [T, 2] -> sqrt(var x + var y) over the finite frames (same unit as nose)."""
    n = np.asarray(nose, dtype=np.float64)
    n = n[np.isfinite(n).all(axis=1)]
    return float(np.sqrt(n.var(axis=0).sum())) if n.shape[0] > 1 else math.nan


def meets(name: str, value: float) -> bool | None:
    """Whether value meets issue 19's bar for the figure name (None when the value is NaN)."""
    if value is None or not np.isfinite(value):
        return None
    op, bar = BARS[name]
    return bool(value >= bar if op == ">=" else value <= bar if op == "<=" else bar[0] <= value <= bar[1])
