"""Hands (HKC/HKV-like) from mediapipe 0.10.21's hand-landmark model, counting only confident, plausible hands.

Each sampled frame is searched afresh (static-image mode: the palm detector runs on every frame). In video mode
(tracking), a clip with no hands in it read a 0.63 detection rate at a 0.975 handedness score (issue 16): a
tracked hand is kept for as long as the landmark model's own presence score holds, and the palm detector does
not look again. The handedness score says left or right, not whether it is a hand. Here a detection counts
only when
- the palm detector is confident (MIN_DETECTION), and
- its 21 keypoints form a plausible hand (`plausible`): a palm neither tiny nor larger than the frame allows,
  five fingers of sensible length for that palm, and a knuckle line neither collapsed nor splayed.

- detection_rate: the fraction of sampled frames with at least one accepted hand;
- confidence (HKC-like): mean handedness score of the accepted hands (mediapipe gives no per-keypoint score);
- spread (HKV-like): for each hand label, the standard deviation over time of its 21 keypoints (in units of
  the frame height), averaged over keypoints and axes, then over the hands seen in >= 2 frames;
- rejected: detections left out as implausible.
"""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from engine.avatar.landmarks import mediapipe_module, quiet_native_logs

MIN_DETECTION = 0.7                  # palm detector score (mediapipe's default 0.5 lets in suit folds and hair)
PALM_RANGE = (0.02, 0.6)             # wrist -> middle knuckle, in frame heights
FINGER_RANGE = (0.4, 1.8)            # knuckle -> tip along the bones, in palm lengths (an adult's is ~0.8-1.1)
KNUCKLES_RANGE = (0.25, 1.5)         # index knuckle -> little-finger knuckle, in palm lengths (~0.6-0.8)
FINGERS = [(1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20)]


def plausible(points: np.ndarray) -> bool:
    """points [21, 2] mediapipe hand keypoints (0 wrist, 9 middle knuckle, 5/17 index/little knuckles), x and y
    in frame heights -> whether they can be a hand. Bends do not matter (bone lengths are summed), so a fist
    or a hand seen at an angle passes; a blob, a splinter or a hand twice the frame does not."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (21, 2) or not np.isfinite(p).all():
        raise ValueError(f"points: expected a finite [21, 2] array, got {p.shape}")
    palm = float(np.linalg.norm(p[9] - p[0]))
    if not PALM_RANGE[0] <= palm <= PALM_RANGE[1]:
        return False
    for chain in FINGERS:
        length = float(np.linalg.norm(np.diff(p[list(chain)], axis=0), axis=1).sum())
        if not FINGER_RANGE[0] * palm <= length <= FINGER_RANGE[1] * palm:
            return False
    knuckles = float(np.linalg.norm(p[17] - p[5]))
    return KNUCKLES_RANGE[0] * palm <= knuckles <= KNUCKLES_RANGE[1] * palm


def keypoint_spread(tracks: dict[str, list[np.ndarray]]) -> dict[str, float]:
    """{hand label: [[21, 2] keypoints per frame it was seen]} -> {label: mean over keypoints and axes of the
    standard deviation over time}, for the hands seen in >= 2 frames."""
    return {label: float(np.stack(t).std(axis=0).mean()) for label, t in tracks.items() if len(t) >= 2}


def hand_scores(frames: np.ndarray, stride: int = 1, progress: bool = False) -> dict:
    """frames [T, H, W, 3] uint8 -> the measures in the module docstring, over every `stride`-th frame."""
    mp = mediapipe_module()
    aspect = frames.shape[2] / frames.shape[1]     # x is given in widths, y in heights: both in heights
    index = list(range(0, len(frames), stride))
    found, scores, rejected = [], [], 0
    tracks: dict[str, list[np.ndarray]] = {"Left": [], "Right": []}
    with quiet_native_logs(), mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=2,
                                                       min_detection_confidence=MIN_DETECTION) as model:
        for i in tqdm(index, desc="hands (mediapipe)", unit="frame", disable=not progress):
            res = model.process(np.ascontiguousarray(frames[i]))
            accepted = 0
            for lm, hd in zip(res.multi_hand_landmarks or [], res.multi_handedness or []):
                points = np.array([[q.x * aspect, q.y] for q in lm.landmark])
                if not plausible(points):
                    rejected += 1
                    continue
                accepted += 1
                c = hd.classification[0]
                scores.append(c.score)
                tracks.setdefault(c.label, []).append(points)
            found.append(accepted)
    spread = keypoint_spread(tracks)
    return {"frames": index, "hands_per_frame": found,
            "detection_rate": float(np.mean([n > 0 for n in found])),
            "confidence": float(np.mean(scores)) if scores else None,
            "spread": float(np.mean(list(spread.values()))) if spread else None,
            "spread_by_hand": spread, "rejected": rejected}
