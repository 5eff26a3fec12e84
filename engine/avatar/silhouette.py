"""The person alone: a person mask without the ground, props or overlays around the person (issue 18).

Two mediapipe masks are at hand. Selfie segmentation (`selfie`) reaches further, to what the person holds or
wears (a helmet under the arm), but on a full-body photo it also takes the grass at the feet, a ball and a
watermark. Pose segmentation (`pose_mask`) follows the detected body closely and leaves props out. The person
alone is:

1. the pose mask (the core), plus each connected piece that selfie segmentation adds to it when that piece
   touches the core more along the upper body (torso, arms, head) than along the legs: a held or worn thing
   is kept, the ground a foot stands on (and whatever lies on it) is not;
2. cut to `far` x the body's size (engine.avatar.limbs.body_scale) around the skeleton: the pose's bones, the
   torso and the head;
3. only its connected pieces that hold a landmark (a visible pose joint or the face): a logo or a neighbour
   that does not touch the person is dropped.

Without a pose the selfie mask stays as it is, apart from step 3 with the face.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from engine.avatar.limbs import BONES, LEGS, TORSO_JOINTS, body_parts, body_scale


def person_alone(selfie: Tensor, pose_mask: Tensor | None = None, pose: Tensor | None = None,
                 face: Tensor | None = None, far: float = 1.2, threshold: float = 0.5) -> Tensor:
    """selfie, pose_mask [H, W] person probabilities; pose [33, >=4] (x, y px, z, visibility) and face [P, >=2]
    in the same pixels (either may be None) -> [H, W] probability: max(selfie, pose_mask) where the person
    alone is, 0 elsewhere. The pieces are those of probability > threshold (a lower one keeps more of what
    the selfie model is unsure of: a crop wants that, a silhouette does not)."""
    prob = selfie if pose_mask is None else torch.maximum(selfie, pose_mask)
    person = (prob > threshold).numpy()
    if pose is not None and pose_mask is not None:
        person = _attached(person, (pose_mask > 0.5).numpy(), pose)
    if pose is not None:
        person &= _skeleton_distance(person.shape, pose, face) <= far * body_scale(pose)
    seeds = []
    if pose is not None:
        seeds += [p[:2] for p in pose.tolist() if p[3] > 0.5]
    if face is not None:
        seeds += face[:, :2].tolist()
    person = _holding(person, seeds)
    return torch.where(torch.from_numpy(person), prob, torch.zeros_like(prob))


def _attached(person: np.ndarray, core: np.ndarray, pose: Tensor) -> np.ndarray:
    """core, plus the connected pieces of person & ~core that touch the core more off the legs than on them."""
    extra = person & ~core
    n, labels = cv2.connectedComponents(extra.astype(np.uint8), connectivity=8)
    if n <= 1:
        return person
    grown = cv2.dilate(labels.astype(np.float32), np.ones((3, 3), np.uint8))       # a label reaches its ring
    ys, xs = np.nonzero(core & (grown > 0))
    kept = core.copy()
    if len(xs):
        part = body_parts(torch.from_numpy(np.stack([xs, ys], 1) + 0.5), pose).numpy()
        leg = np.isin(part, list(LEGS))
        which = grown[ys, xs].astype(np.int64)
        on_legs = np.bincount(which[leg], minlength=n)
        off_legs = np.bincount(which[~leg], minlength=n)
        keep = off_legs > on_legs
        keep[0] = False
        kept |= keep[labels]
    return kept


def _skeleton_distance(shape: tuple[int, int], pose: Tensor, face: Tensor | None) -> np.ndarray:
    """[H, W] distance in pixels to the skeleton drawn in the image: bones, the torso and the head."""
    H, W = shape
    drawn = np.zeros((H, W), np.uint8)
    p = pose[:, :2].float()

    def pt(j: int) -> tuple[int, int]:
        return round(float(p[j, 0])), round(float(p[j, 1]))
    for _, a, b in BONES:
        cv2.line(drawn, pt(a), pt(b), 1, 1)
    cv2.fillPoly(drawn, [np.array([pt(j) for j in TORSO_JOINTS], np.int32)], 1)
    head = face[:, :2] if face is not None else p[:11]                          # the face, or pose 0..10
    cv2.fillPoly(drawn, [cv2.convexHull(head.round().numpy().astype(np.int32))], 1)
    cv2.line(drawn, pt(0), ((pt(11)[0] + pt(12)[0]) // 2, (pt(11)[1] + pt(12)[1]) // 2), 1, 1)    # the neck
    return cv2.distanceTransform((1 - drawn).astype(np.uint8), cv2.DIST_L2, 5)


def _holding(person: np.ndarray, seeds: list) -> np.ndarray:
    """The connected pieces of person that hold at least one seed (x, y); all of person when none does."""
    _, labels = cv2.connectedComponents(person.astype(np.uint8), connectivity=8)
    H, W = person.shape
    hit = {int(labels[int(y), int(x)]) for x, y in seeds if 0 <= x < W and 0 <= y < H} - {0}
    if not hit:
        return person
    return np.isin(labels, sorted(hit))
