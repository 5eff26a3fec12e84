"""The person alone: a person mask without the ground, props or overlays around the person (issue 18).

Two mediapipe masks are at hand. Selfie segmentation (`selfie`) reaches further, to what the person holds or
wears (a helmet under the arm), but on a full-body photo it also takes the grass at the feet, a ball and a
watermark. Pose segmentation (`pose_mask`) follows the detected body closely and leaves props out. The person
alone is:

1. the pose mask (the core), plus each connected piece that selfie segmentation adds to it when that piece
   touches the core more along the upper body (torso, arms, head) than along the legs: a held or worn thing
   is kept, the ground a foot stands on (and whatever lies on it) is not. Of such a piece, what lies more
   than `NEAR` x the body's size from the core is kept only above the shoulders (headwear, hair) or when the
   piece touches the core mostly at a hand (it is held): a neighbour pressed against the person's side is not,
   and a piece that lies mostly that far out and is neither worn nor held goes whole, its band along the core
   included (on a greyscale photo the selfie model takes in the crowd behind an arm);
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

from engine.avatar.limbs import BONES, HAND_POINTS, LEGS, TORSO_JOINTS, body_parts, body_scale

NEAR = 0.12          # x body_scale: a fringe of hair or cloth beyond the pose mask is at most this wide
HELD = 0.5           # x body_scale: a piece touching the core this close to a hand point is held (the hand's
                     # landmarks on what it holds are rough: it hides the hand)
REACH = 1.5          # x body_scale: what is held lies within this of a hand point
HELD_CONTACT = 0.5   # ... and at least this share of its contact with the core is near a hand (a held thing
                     # touches the body mostly at the hand; background pressed along an arm and the torso does not).
                     # Only the contact where the piece reaches beyond NEAR counts: a thin halo of unsure pixels
                     # round the whole body (the crop's lower threshold) joins everything into one piece
FRINGE = 0.5         # a piece with more than this share of its pixels beyond NEAR is no fringe: unless worn or
                     # held, it goes whole (its band along the core is background, not hair or cloth)


def person_alone(selfie: Tensor, pose_mask: Tensor | None = None, pose: Tensor | None = None,
                 face: Tensor | None = None, far: float = 1.2, threshold: float = 0.5, strict: bool = True) -> Tensor:
    """selfie, pose_mask [H, W] person probabilities; pose [33, >=4] (x, y px, z, visibility) and face [P, >=2]
    in the same pixels (either may be None) -> [H, W] probability: max(selfie, pose_mask) where the person
    alone is, 0 elsewhere. The pieces are those of probability > threshold (a lower one keeps more of what
    the selfie model is unsure of: a crop wants that, a silhouette does not). strict=False, for a crop, keeps
    the near band of every attached piece and holds a piece that touches the core near a hand at all (a crop
    that cuts off a held helmet loses it for good; a silhouette drawn from the crop still drops it)."""
    prob = selfie if pose_mask is None else torch.maximum(selfie, pose_mask)
    person = (prob > threshold).numpy()
    if pose is not None and pose_mask is not None:
        person = _attached(person, (pose_mask > 0.5).numpy(), pose, strict)
    if pose is not None:
        person &= _skeleton_distance(person.shape, pose, face) <= far * body_scale(pose)
    seeds = []
    if pose is not None:
        seeds += [p[:2] for p in pose.tolist() if p[3] > 0.5]
    if face is not None:
        seeds += face[:, :2].tolist()
    person = pieces_holding(person, seeds)
    return torch.where(torch.from_numpy(person), prob, torch.zeros_like(prob))


def _attached(person: np.ndarray, core: np.ndarray, pose: Tensor, strict: bool = True) -> np.ndarray:
    """core, plus the connected pieces of person & ~core that touch the core more off the legs than on them;
    of those, each piece lying further than NEAR x body_scale from the core only when it is worn (90% of it
    above the shoulders) or held (HELD_CONTACT of its contact with the core within 2 NEAR of its far part lies
    within HELD of a hand point in the frame, and 90% of it lies within REACH of one). A piece more than FRINGE
    of which lies beyond NEAR, none of it worn or held, is dropped whole, its near band included.
    strict=False (person_alone): any contact within HELD of a hand holds, and no piece is dropped whole."""
    extra = person & ~core
    n, labels = cv2.connectedComponents(extra.astype(np.uint8), connectivity=8)
    if n <= 1:
        return person
    grown = cv2.dilate(labels.astype(np.float32), np.ones((3, 3), np.uint8))       # a label reaches its ring
    ys, xs = np.nonzero(core & (grown > 0))
    kept = core.copy()
    if not len(xs):
        return kept
    which = grown[ys, xs].astype(np.int64)
    part = body_parts(torch.from_numpy(np.stack([xs, ys], 1) + 0.5), pose).numpy()
    leg = np.isin(part, list(LEGS))
    keep = np.bincount(which[~leg], minlength=n) > np.bincount(which[leg], minlength=n)
    keep[0] = False
    scale = body_scale(pose)
    # every hand point in the frame counts, whatever its visibility: a hand holding something is hidden by it
    spots = np.ones(core.shape, np.uint8)
    for x, y in pose[[j for side in HAND_POINTS.values() for j in side], :2].round().int().tolist():
        if 0 <= x < core.shape[1] and 0 <= y < core.shape[0]:
            spots[y, x] = 0
    to_hand = cv2.distanceTransform(spots, cv2.DIST_L2, 5) if not spots.all() else np.full(core.shape, np.inf)
    near = cv2.distanceTransform((~core).astype(np.uint8), cv2.DIST_L2, 5) <= NEAR * scale
    far = extra & keep[labels] & ~near
    at_hand = to_hand[ys, xs] <= HELD * scale                # contact pixels (core) near a hand
    if strict:                                             # most of the contact behind the far part is at a hand
        backed = cv2.distanceTransform((~far).astype(np.uint8), cv2.DIST_L2, 5)[ys, xs] <= 2 * NEAR * scale
        held = (np.bincount(which[backed & at_hand], minlength=n)
                >= HELD_CONTACT * np.maximum(np.bincount(which[backed], minlength=n), 1))
    else:                                                  # any contact at a hand
        held = np.bincount(which[at_hand], minlength=n) > 0
    # each far piece: worn on the head, held, or someone else (shares of its pixels, per piece)
    m, pieces = cv2.connectedComponents(far.astype(np.uint8), connectivity=8)
    area = np.maximum(np.bincount(pieces.ravel(), minlength=m), 1)
    above = np.arange(core.shape[0])[:, None] < float(pose[[11, 12], 1].max())
    worn = np.bincount(pieces[np.broadcast_to(above, core.shape)], minlength=m) / area >= 0.9
    owner = np.zeros(m, np.int64)
    owner[pieces.ravel()] = labels.ravel()                 # the selfie-only piece each far piece is part of
    held_here = held[owner] & (np.bincount(pieces[to_hand <= REACH * scale], minlength=m) / area >= 0.9)
    stay = worn | held_here
    stay[0] = False
    staying = np.zeros(n, bool)                            # pieces with a far part that stays
    staying[owner[stay]] = True
    fringe = np.bincount(labels[far], minlength=n) <= FRINGE * np.bincount(labels.ravel(), minlength=n)
    kept |= (keep & (fringe | staying | (not strict)))[labels] & near & extra
    return kept | stay[pieces]


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


def pieces_holding(person: np.ndarray, seeds: list) -> np.ndarray:
    """The connected pieces (8-connected) of person [H, W] bool that hold at least one seed (x, y); all of person
    when none does."""
    _, labels = cv2.connectedComponents(person.astype(np.uint8), connectivity=8)
    H, W = person.shape
    hit = {int(labels[int(y), int(x)]) for x, y in seeds if 0 <= x < W and 0 <= y < H} - {0}
    if not hit:
        return person
    return np.isin(labels, sorted(hit))
