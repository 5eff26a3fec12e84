"""Lip sync (SyncC/SyncD-like): mediapipe's mouth opening per frame (engine.evaluation.lipsync: inner lips 13/14 over the
eye-corner distance) against the audio RMS envelope at the clip's frame rate; the Pearson r at every lag in
-max_lag..max_lag frames, its peak and where it is. A positive lag means the mouth follows the audio."""
from __future__ import annotations

import numpy as np
import torch

from engine.audio.features import SAMPLE_RATE
from engine.evaluation.lipsync import lagged_correlation, mouth_opening, sync_score


def envelope(wave: torch.Tensor, fps: float, n_frames: int) -> np.ndarray:
    """RMS of wave [S] (16 kHz) over each frame's time span [t / fps, (t + 1) / fps) -> [n_frames] (0 past
    the end of the audio). Any frame rate: spans are cut at rounded sample positions."""
    w = np.asarray(wave, dtype=np.float64).reshape(-1)
    edges = np.round(np.arange(n_frames + 1) * SAMPLE_RATE / fps).astype(np.int64).clip(0, len(w))
    energy = np.concatenate([[0.0], np.cumsum(w * w)])
    count = np.diff(edges)
    return np.sqrt(np.diff(energy[edges]) / np.maximum(count, 1)) * (count > 0)


def lip_sync(frames: np.ndarray, wave: torch.Tensor, fps: float, max_lag: int = 15,
             progress: bool = False) -> dict:
    """frames [T, H, W, 3] uint8 and their speech -> scores and the two series (for the plot)."""
    opening = mouth_opening(list(frames), progress=progress)
    env = envelope(wave, fps, len(frames))
    series = {"opening": opening.tolist(), "envelope": env.tolist()}
    try:
        s = sync_score(opening, env, max_lag)
    except ValueError:
        by_lag = lagged_correlation(opening, env, max_lag)         # every lag NaN: kept for the report
        return {"face_found": float(np.isfinite(opening).mean()), "r_at_0": by_lag[0], "peak_r": None,
                "lag_frames": None, "r_by_lag": {str(k): v for k, v in by_lag.items()}, **series,
                "note": "no face in enough frames, or a constant mouth or silence: nothing to correlate"}
    return {**s, "r_by_lag": {str(k): v for k, v in s["r_by_lag"].items()},
            "lag_ms": 1000.0 * s["lag_frames"] / fps, **series}
