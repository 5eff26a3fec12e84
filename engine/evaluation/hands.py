"""Hands (HKC/HKV-like) from mediapipe 0.10.21's hand-landmark model, in video mode over the frames.

- detection_rate: the fraction of frames with at least one hand found;
- confidence (HKC-like): mean handedness score of the hands found (mediapipe gives no per-keypoint score);
- spread (HKV-like): for each hand label, the standard deviation over time of its 21 keypoints (in units of
  the frame height), averaged over keypoints and axes, then over the hands seen in >= 2 frames.
"""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from engine.landmarks import _mediapipe


def keypoint_spread(tracks: dict[str, list[np.ndarray]]) -> dict[str, float]:
    """{hand label: [[21, 2] keypoints per frame it was seen]} -> {label: mean over keypoints and axes of the
    standard deviation over time}, for the hands seen in >= 2 frames."""
    return {label: float(np.stack(t).std(axis=0).mean()) for label, t in tracks.items() if len(t) >= 2}


def hand_scores(frames: np.ndarray, stride: int = 1, progress: bool = False) -> dict:
    mp = _mediapipe()
    aspect = frames.shape[2] / frames.shape[1]     # x is given in widths, y in heights: both in heights
    index = list(range(0, len(frames), stride))
    found, scores = [], []
    tracks: dict[str, list[np.ndarray]] = {"Left": [], "Right": []}
    with mp.solutions.hands.Hands(static_image_mode=False, max_num_hands=2) as model:
        for i in tqdm(index, desc="hands (mediapipe)", unit="frame", disable=not progress):
            res = model.process(np.ascontiguousarray(frames[i]))
            hands = res.multi_hand_landmarks or []
            found.append(len(hands))
            for lm, hd in zip(hands, res.multi_handedness or []):
                c = hd.classification[0]
                scores.append(c.score)
                tracks.setdefault(c.label, []).append(np.array([[p.x * aspect, p.y] for p in lm.landmark]))
    spread = keypoint_spread(tracks)
    return {"frames": index, "hands_per_frame": found,
            "detection_rate": float(np.mean([n > 0 for n in found])),
            "confidence": float(np.mean(scores)) if scores else None,
            "spread": float(np.mean(list(spread.values()))) if spread else None,
            "spread_by_hand": spread}
