"""Person mask and landmarks of one photo, from mediapipe 0.10.21's bundled models (offline): selfie
segmentation, face mesh (478 points with irises), pose (33 points, complexity 1, with its segmentation) and
hands (21 points each). Everything comes back in pixels of the input image; personalize anchors control
particles to these. The person mask is the person alone (engine.avatar.silhouette: no ground, props or overlays
unless held or worn), from both the selfie and the pose segmentation.

mediapipe is installed by scripts/setup.sh with --no-deps (its declared jax/jaxlib dependency is ~600 MB and
unused by these solutions); pyproject.toml lists what it does import.
"""
from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from engine.avatar.silhouette import person_alone

os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ logging: warnings and up only
VERBOSE_ENV = "AUDIOAVATAR_VERBOSE"             # set (the CLI's --verbose): let mediapipe's own log lines through
_quiet_lock, _quiet_depth, _saved_fd = threading.Lock(), 0, -1


@contextmanager
def quiet_native_logs():
    """mediapipe's C++ side (TFLite's "Created ... delegate", absl's `W0000 ...` lines) writes straight to file
    descriptor 2, past sys.stderr and GLOG_minloglevel: this points fd 2 at /dev/null while the block runs,
    unless $AUDIOAVATAR_VERBOSE is set. Re-entrant and thread-safe (the outermost block restores fd 2); Python
    errors raised inside are reported after the block, so they are never hidden."""
    global _quiet_depth, _saved_fd
    if os.environ.get(VERBOSE_ENV):
        yield
        return
    with _quiet_lock:
        if _quiet_depth == 0:
            sys.stderr.flush()
            _saved_fd = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                os.dup2(_saved_fd, 2)
                os.close(_saved_fd)


def mediapipe_module():
    """The mediapipe package (0.10.21, which ships its models), or an ImportError saying how to install it."""
    try:
        import mediapipe as mp
    except ImportError as e:
        raise ImportError("engine.avatar.landmarks needs mediapipe==0.10.21; run scripts/setup.sh, which installs it "
                          "with --no-deps") from e
    return mp


@dataclass
class Landmarks:
    """One person in an image of H x W pixels. x, y in pixels; z in pixels too (mediapipe's relative depth
    scaled by the image width; smaller is closer to the camera)."""
    mask: Tensor                      # [H, W] person probability in [0, 1], the person alone
    face: Tensor | None               # [478, 3]
    pose: Tensor | None               # [33, 4]: x, y, z, visibility
    left_hand: Tensor | None          # [21, 3], the person's anatomical left
    right_hand: Tensor | None         # [21, 3]
    notes: list[str] = field(default_factory=list)
    unsure: Tensor | None = None      # [H, W] bool: what the selfie or pose model takes for a person but `mask`
                                      # leaves out (ground, props, neighbours, or a piece of this person the
                                      # pose model missed): the silhouette's edge against it is no sure edge


def _points(landmarks, w: int, h: int, with_visibility: bool = False) -> Tensor:
    rows = [[p.x * w, p.y * h, p.z * w] + ([p.visibility] if with_visibility else []) for p in landmarks]
    return torch.tensor(rows, dtype=torch.float32)


def detect(image: Tensor, pose_hint: tuple[Tensor, Tensor | None] | None = None) -> Landmarks:
    """image [H, W, 3] RGB float in [0, 1] -> Landmarks of the most prominent person. pose_hint: a pose reading
    (pose [33, 4], segmentation [H, W] or None) of this person on a larger view of the same photo (personalize:
    the uncropped photo; pose_in_crop), in this image's pixels; see _pose for when it is taken.

    Several faces: the face of the person the body pose found is taken (the largest without a pose), and
    `notes` says so. No face and no body: ValueError."""
    if image.dim() != 3 or image.shape[-1] != 3:
        raise ValueError(f"image: expected shape [H, W, 3], got {list(image.shape)}")
    mp = mediapipe_module()
    rgb = np.ascontiguousarray((image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy())
    notes: list[str] = []
    with quiet_native_logs():
        mask, unsure, face, n_faces, pose, hands = _run_models(mp, rgb, pose_hint)
    if n_faces > 1:
        chosen = "the face of the person whose body pose was found" if pose is not None else "the largest"
        notes.append(f"{n_faces} faces found; using {chosen}")
    if face is None and pose is None:
        raise ValueError("no person found in the photo (no face and no body detected)")
    left, right = _assign_hands(hands, pose)
    return Landmarks(mask, face, pose, left, right, notes, unsure)


def person_mask(image: Tensor, side: int = 2048) -> Tensor:
    """image [H, W, 3] RGB float in [0, 1] -> [H, W] probability of the person alone (personalize's crop), from
    mediapipe's selfie and pose segmentation and its pose (engine.avatar.silhouette). The selfie model runs at
    256 px whatever it is given, but its mask comes out sharper, and reaches further (a held helmet, a hand),
    when it is given the photo at full size rather than a small copy: so only a photo over `side` pixels is
    shrunk first."""
    return person_mask_and_pose(image, side)[0]


def person_mask_and_pose(image: Tensor, side: int = 2048) -> tuple[Tensor, tuple[Tensor, Tensor | None] | None]:
    """person_mask, and the pose it was made with: (pose [33, 4], its segmentation [H, W] or None) in image
    pixels, or None when none was found."""
    if image.dim() != 3 or image.shape[-1] != 3:
        raise ValueError(f"image: expected shape [H, W, 3], got {list(image.shape)}")
    H, W = image.shape[:2]
    small = image.permute(2, 0, 1)[None]
    if max(H, W) > side:
        s = side / max(H, W)
        small = torch.nn.functional.interpolate(small, size=(max(1, round(H * s)), max(1, round(W * s))),
                                                mode="area")
    rgb = np.ascontiguousarray((small[0].permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy())
    mp = mediapipe_module()
    with quiet_native_logs():
        with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
            selfie = torch.from_numpy(seg.process(rgb).segmentation_mask.astype(np.float32))
        pose, pose_seg = _pose(mp, rgb, selfie)
    # person_box's threshold and rules: keep the unsure parts and whatever may be held (silhouette.person_alone)
    mask = person_alone(selfie, pose_seg, pose, threshold=0.25, strict=False)

    def full_size(m: Tensor) -> Tensor:
        return torch.nn.functional.interpolate(m[None, None], size=(H, W), mode="bilinear")[0, 0]
    reading = None
    if pose is not None:
        pose = pose.clone()
        pose[:, :3] *= W / small.shape[-1]                             # x, y and z (z is in width pixels)
        reading = (pose, None if pose_seg is None else full_size(pose_seg))
    return full_size(mask), reading


def pose_in_crop(reading: tuple[Tensor, Tensor | None] | None, box: tuple[int, int, int, int],
                 size: tuple[int, int]) -> tuple[Tensor, Tensor | None] | None:
    """A pose reading of a photo (pose [33, 4], segmentation [H, W] or None; person_mask_and_pose) -> the same in
    pixels of its crop to box (x0, y0, x1, y1) scaled to size (h, w) (engine.avatar.photo.crop): the pose_hint
    of detect on the crop."""
    if reading is None:
        return None
    pose, seg = reading
    x0, y0, x1, y1 = box
    out = pose.clone()
    out[:, :2] -= torch.tensor([float(x0), float(y0)])
    out[:, :3] *= size[1] / (x1 - x0)                                  # x, y and z (z is in width pixels)
    if seg is not None:
        seg = torch.nn.functional.interpolate(seg[y0:y1, x0:x1][None, None], size=size, mode="bilinear")[0, 0]
    return out, seg


# mediapipe pose's index of each point's left-right twin (0 nose, 1-3 / 4-6 eyes, 7 / 8 ears, 9 / 10 mouth corners,
# then left / right pairs from the shoulders, 11 / 12, to the feet, 31 / 32; the model card's landmark list)
MIRRORED = [0, 4, 5, 6, 1, 2, 3, 8, 7, 10, 9] + [i + 1 if i % 2 else i - 1 for i in range(11, 33)]
ON_BACKGROUND = 0.1                  # selfie probability under which a point lies on the background
LOW_CONFIDENCE = (0.2, 0.1)          # the pose detector's thresholds for the last looks (its default is 0.5); at
                                     # 0.05 it found "people" in a box, a chick, a squirrel (opencv-doc's samples)
MIN_SUPPORT = 6                      # visible body points on the selfie mask a low-threshold reading needs


def _pose_once(mp, rgb: np.ndarray, confidence: float = 0.5) -> tuple[Tensor | None, Tensor | None]:
    h, w = rgb.shape[:2]
    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True,
                                min_detection_confidence=confidence) as model:
        res = model.process(np.ascontiguousarray(rgb))
    if res.pose_landmarks is None:
        return None, None
    seg = None if res.segmentation_mask is None else torch.from_numpy(res.segmentation_mask.astype(np.float32))
    return _points(res.pose_landmarks.landmark, w, h, with_visibility=True), seg


def mirrored_back(pose: Tensor, width: int) -> Tensor:
    """A pose [33, C] read on the mirror image of a `width`-pixel-wide photo -> the same pose on the photo: x
    mirrored, and each point swapped with its left-right twin (the mirror shows the person's left as a right)."""
    out = pose[MIRRORED].clone()
    out[:, 0] = width - out[:, 0]
    return out


def _selfie_at_seen(pose: Tensor, selfie: Tensor) -> Tensor:
    """The selfie mask [H, W] under each body point (11-32) of pose [33, 4] that mediapipe calls visible (> 0.5)
    and that lies in the frame: [S]."""
    H, W = selfie.shape
    x, y = pose[11:, 0].floor().long(), pose[11:, 1].floor().long()
    seen = (pose[11:, 3] > 0.5) & (x >= 0) & (x < W) & (y >= 0) & (y < H)
    return selfie[y[seen], x[seen]]


def misplaced(pose: Tensor, selfie: Tensor) -> int:
    """How many body points (11-32) of pose [33, 4] mediapipe calls visible (> 0.5) lie in the frame on what the
    selfie mask [H, W] calls background: a hand put on the buildings behind a man in profile."""
    return int((_selfie_at_seen(pose, selfie) < ON_BACKGROUND).sum())


def supported(pose: Tensor, selfie: Tensor | None) -> bool:
    """Whether a reading not found at the default threshold may stand: no visible body point on the selfie
    mask's background (misplaced) and at least MIN_SUPPORT of them on the person (selfie >= 0.5)."""
    if selfie is None:
        return True
    under = _selfie_at_seen(pose, selfie)
    return int((under < ON_BACKGROUND).sum()) == 0 and int((under >= 0.5).sum()) >= MIN_SUPPORT


def _pose(mp, rgb: np.ndarray, selfie: Tensor | None = None,
          hint: tuple[Tensor, Tensor | None] | None = None) -> tuple[Tensor | None, Tensor | None]:
    """mediapipe pose on rgb [H, W, 3] uint8 -> (pose [33, 4] in pixels, its segmentation [H, W]), or Nones.

    When it finds no one, or (given the selfie mask [H, W]) puts visible body points on its background, the model
    gets a second look at the mirrored photo (its reading mirrored back, left and right swapped). The reading with
    fewer such points is kept, the first on a tie. When neither look finds anyone, the detector's threshold is
    lowered step by step (LOW_CONFIDENCE), the photo then its mirror image at each: its person detector scores a
    greyscale photo lower (messi5.jpg in grey is found at 0.2 and not at 0.5, and the landmarks are then as sure
    as in colour: mean visibility 0.92). Before those, a hint (a reading of the same person on a larger view of
    the photo, mapped here) is taken: greyscale messi5.jpg's crop is found only at 0.05, where boxes and
    squirrels pass too. Given a selfie mask, a hint or a low-threshold reading must be `supported`."""
    pose, seg = _pose_once(mp, rgb)
    if pose is not None and (selfie is None or misplaced(pose, selfie) == 0):
        return pose, seg
    other, other_seg = _pose_mirrored(mp, rgb)
    if other is None and pose is None:
        return hint if hint is not None and supported(hint[0], selfie) else _pose_low(mp, rgb, selfie)
    if other is None:
        return pose, seg
    if pose is not None and misplaced(other, selfie) >= misplaced(pose, selfie):
        return pose, seg
    return other, other_seg


def _pose_mirrored(mp, rgb: np.ndarray, confidence: float = 0.5) -> tuple[Tensor | None, Tensor | None]:
    """_pose_once on the mirror image of rgb, its reading and segmentation mapped back onto rgb."""
    pose, seg = _pose_once(mp, rgb[:, ::-1], confidence)
    if pose is None:
        return None, None
    return mirrored_back(pose, rgb.shape[1]), None if seg is None else seg.flip(1)


def _pose_low(mp, rgb: np.ndarray, selfie: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """The last looks of _pose: each LOW_CONFIDENCE threshold in turn, on the photo then on its mirror image."""
    for confidence in LOW_CONFIDENCE:
        for look in (_pose_once, _pose_mirrored):
            pose, seg = look(mp, rgb, confidence)
            if pose is not None and supported(pose, selfie):
                return pose, seg
    return None, None


def _run_models(mp, rgb: np.ndarray, pose_hint: tuple[Tensor, Tensor | None] | None = None):
    """Person mask [H, W] (the person alone), what the models took for a person besides [H, W] bool, face mesh
    [478, 3] (or None) and face count, pose [33, 4] (or None), hands."""
    h, w = rgb.shape[:2]
    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
        selfie = torch.from_numpy(seg.process(rgb).segmentation_mask.astype(np.float32))
    pose, pose_seg = _pose(mp, rgb, selfie, pose_hint)
    face, n_faces = face_mesh(rgb, pose)
    mask = person_alone(selfie, pose_seg, pose, face)
    taken = selfie if pose_seg is None else torch.maximum(selfie, pose_seg)
    unsure = (taken > 0.5) & (mask <= 0.5)
    with mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=2) as hands_model:
        hands = [_points(hl.landmark, w, h) for hl in (hands_model.process(rgb).multi_hand_landmarks or [])]
    return mask, unsure, face, n_faces, pose, hands


POSE_FACE_CROP = 1.6                 # a face crop from the pose: this x the width of its face points, each side
POSE_FACE_SIDE = 256                 # px the crop is enlarged to (the face of a whole-body photo may be 20 px)


def face_mesh(rgb: np.ndarray, pose: Tensor | None = None) -> tuple[Tensor | None, int]:
    """Face mesh [478, 3] (pixels) of the posed person's face in rgb [H, W, 3] uint8 (the largest face without a
    pose; _the_posed_face), and how many faces there are.
    Faces are found by the full-range detector (face mesh's own detector is short-range and misses the small face
    of a whole-body photo), or where it finds none, by the short-range one (the full-range model misses a face
    that fills a tight crop); the mesh runs on a square crop around the chosen one, mapped back to pixels.
    Where neither detector finds a face but pose [33, 4] sees its face (nose and both eyes visible), the mesh
    runs on a crop around the pose's face points, enlarged to POSE_FACE_SIDE px (greyscale messi5.jpg: no
    detector finds its 18 px face, the mesh does on the enlarged crop); it counts as one face."""
    mp, h, w = mediapipe_module(), *rgb.shape[:2]
    boxes = []
    for model in (1, 0):                                  # 1: full range (to 5 m), 0: short range (to 2 m)
        with quiet_native_logs(), mp.solutions.face_detection.FaceDetection(model_selection=model,
                                                                            min_detection_confidence=0.5) as fd:
            boxes = [d.location_data.relative_bounding_box for d in (fd.process(rgb).detections or [])]
        if boxes:
            break
    if boxes:
        box = _the_posed_face(boxes, pose, w, h)
        cx, cy = (box.xmin + box.width / 2) * w, (box.ymin + box.height / 2) * h
        half = 1.1 * max(box.width * w, box.height * h)                  # the face plus hair and chin
        return _mesh_in(mp, rgb, cx, cy, half, 0), len(boxes)
    if pose is None or not bool((pose[[0, 2, 5], 3] > 0.5).all()):
        return None, 0
    face = pose[:11, :2]
    cx, cy = (face.amin(0) + face.amax(0)).div(2).tolist()
    half = POSE_FACE_CROP * max(float((face[:, 0].amax() - face[:, 0].amin())), 8.0)
    pts = _mesh_in(mp, rgb, cx, cy, half, POSE_FACE_SIDE)
    return pts, int(pts is not None)


def _the_posed_face(boxes: list, pose: Tensor | None, w: int, h: int):
    """Of several face boxes (mediapipe relative bounding boxes), the one of the person the pose [33, 4] found:
    the box holding the pose's nose (the one whose centre is nearest it, if several do). Without a visible nose
    in any box, the largest. In a group photo the largest face may be a neighbour's, whose mouth then floated
    beside the posed person's head."""
    largest = max(boxes, key=lambda b: b.width * b.height)
    if pose is None or float(pose[0, 3]) <= 0.5:
        return largest
    nx, ny = float(pose[0, 0]) / w, float(pose[0, 1]) / h
    holding = [b for b in boxes if b.xmin <= nx <= b.xmin + b.width and b.ymin <= ny <= b.ymin + b.height]
    if not holding:
        return largest
    return min(holding, key=lambda b: (b.xmin + b.width / 2 - nx) ** 2 + (b.ymin + b.height / 2 - ny) ** 2)


def _mesh_in(mp, rgb: np.ndarray, cx: float, cy: float, half: float, side: int) -> Tensor | None:
    """Face mesh [478, 3] in pixels of rgb, run on the square crop of half-width `half` about (cx, cy), that crop
    first enlarged to side px on its longer side when side > 0; None when the mesh finds no face there."""
    h, w = rgb.shape[:2]
    x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
    x1, y1 = int(min(w, cx + half)), int(min(h, cy + half))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    if side:                                               # enlarged, its aspect kept (a crop cut by the frame)
        k = side / max(x1 - x0, y1 - y0)
        size = (max(1, round((x1 - x0) * k)), max(1, round((y1 - y0) * k)))
        crop = np.ascontiguousarray(np.asarray(Image.fromarray(crop).resize(size, Image.LANCZOS)))
    with quiet_native_logs(), mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                              refine_landmarks=True) as fm:
        found = fm.process(crop).multi_face_landmarks
    if not found:
        return None
    pts = _points(found[0].landmark, x1 - x0, y1 - y0)     # normalised coordinates: the crop's own size
    pts[:, 0] += x0
    pts[:, 1] += y0
    return pts


def _assign_hands(hands: list[Tensor], pose: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """(left, right) by the distance of each hand's wrist (point 0) to the pose's wrists (15 = left,
    16 = right): one hand goes to the nearer wrist, two hands take the pairing with the smaller total distance.
    mediapipe's own handedness label assumes a mirrored selfie, so it is not used. Without a pose, the
    hands keep detection order."""
    hands = hands[:2]
    if not hands:
        return None, None
    if pose is None:
        return hands[0], hands[1] if len(hands) > 1 else None
    dist = [[float((hd[0, :2] - pose[j, :2]).norm()) for j in (15, 16)] for hd in hands]  # [hand][left, right]
    if len(hands) == 1:
        return (hands[0], None) if dist[0][0] <= dist[0][1] else (None, hands[0])
    straight = dist[0][0] + dist[1][1]
    return (hands[0], hands[1]) if straight <= dist[0][1] + dist[1][0] else (hands[1], hands[0])
