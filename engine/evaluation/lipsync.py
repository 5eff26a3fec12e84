"""Lip-sync measured with an evaluator nobody on this project wrote: mediapipe's face mesh (0.10.21).

For each rendered frame [H, W, 3] uint8: mouth opening = distance between the inner-lip points 13 (upper) and
14 (lower), divided by the outer-eye-corner distance (33, 263), so it does not depend on image size or
zoom. The faces are found by the full-range face detector and meshed on a crop (engine.avatar.landmarks).
Against the audio: the RMS envelope per 25 fps frame (engine.audio.features.frame_rms), and the Pearson correlation of
the two at every lag in -max_lag..max_lag frames. A positive lag means the mouth follows the audio.
bench/avatar_engine.py uses this for issue 4's lip-sync bar; the evaluation suite reuses it.
"""
from __future__ import annotations

import math

import numpy as np
from tqdm import tqdm

from engine.avatar.landmarks import face_mesh

UPPER_LIP, LOWER_LIP, EYE_CORNERS = 13, 14, (33, 263)


def mouth_opening(frames, progress: bool = False) -> np.ndarray:
    """frames: iterable of [H, W, 3] uint8 RGB -> [T] mouth opening (NaN where no face was found)."""
    out = []
    for frame in tqdm(frames, desc="measuring mouth opening", unit="frame", disable=not progress):
        face, _ = face_mesh(np.ascontiguousarray(frame))
        if face is None:
            out.append(math.nan)
            continue
        eyes = float((face[EYE_CORNERS[0], :2] - face[EYE_CORNERS[1], :2]).norm())
        out.append(float((face[UPPER_LIP, :2] - face[LOWER_LIP, :2]).norm()) / max(eyes, 1e-6))
    return np.asarray(out, dtype=np.float64)


def lagged_correlation(signal: np.ndarray, reference: np.ndarray, max_lag: int = 10) -> dict[int, float]:
    """Pearson r between signal[t] and reference[t - lag] for lag in -max_lag..max_lag (NaNs dropped pairwise).
    Both [T]; a peak at lag L > 0 means the signal follows the reference L frames later."""
    s, r = np.asarray(signal, np.float64), np.asarray(reference, np.float64)
    if s.shape != r.shape or s.ndim != 1:
        raise ValueError(f"signal/reference: expected two [T] arrays of one length, got {s.shape} and {r.shape}")
    out = {}
    for lag in range(-max_lag, max_lag + 1):
        a, b = (s[lag:], r[:len(r) - lag]) if lag >= 0 else (s[:lag], r[-lag:])
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() < 3 or a[ok].std() == 0 or b[ok].std() == 0:
            out[lag] = math.nan
            continue
        out[lag] = float(np.corrcoef(a[ok], b[ok])[0, 1])
    return out


def sync_score(opening: np.ndarray, envelope: np.ndarray, max_lag: int = 10) -> dict:
    """The peak correlation and its lag (SyncC/SyncD-like), r at lag 0, and r at every lag ("r_by_lag")."""
    by_lag = lagged_correlation(opening, envelope, max_lag)
    finite = {k: v for k, v in by_lag.items() if math.isfinite(v)}
    if not finite:
        raise ValueError("opening/envelope: no lag with enough finite, varying frames to correlate")
    best = max(finite, key=finite.get)
    return {"peak_r": finite[best], "lag_frames": best, "r_at_0": by_lag[0],
            "face_found": float(np.isfinite(opening).mean()), "r_by_lag": by_lag}
