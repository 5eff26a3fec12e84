"""Landmarks on the bundled astronaut portrait, against points annotated by hand on the photo (pixels of the
512x512 original): pupils (203, 101) and (246, 104), mouth centre (224, 145), nose tip (222, 127)."""
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
from engine.avatar import landmarks  # noqa: E402
from engine.avatar.landmarks import (_assign_hands, _pose_once, detect, mediapipe_module, mirrored_back,  # noqa: E402
                                     misplaced, quiet_native_logs)
from engine.avatar.photo import load_photo  # noqa: E402
from skeleton import pose  # noqa: E402

ASTRONAUT = Path(__file__).resolve().parent.parent / "assets" / "astronaut.png"
PUPILS = torch.tensor([[203.0, 101.0], [246.0, 104.0]])
MOUTH, NOSE = torch.tensor([224.0, 145.0]), torch.tensor([222.0, 127.0])
PERSON = [(224, 128), (225, 40), (150, 350)]          # face, hair, suit (x, y)
BACKGROUND = [(30, 100), (340, 100), (420, 150), (320, 20)]  # flag, wall, shuttle, top


@pytest.fixture(scope="module")
def astronaut():
    image, _ = load_photo(ASTRONAUT)
    return image, detect(image)


def test_face_landmarks_match_hand_annotation(astronaut):
    _, lm = astronaut
    assert lm.face is not None and lm.face.shape == (478, 3) and lm.notes == []
    irises = lm.face[[468, 473], :2]
    err = min((irises - PUPILS).norm(dim=-1).max(), (irises.flip(0) - PUPILS).norm(dim=-1).max())
    assert float(err) < 5.0, f"iris centres {irises.tolist()} vs annotated pupils {PUPILS.tolist()}"
    assert float((lm.face[[13, 14], :2].mean(0) - MOUTH).norm()) < 5.0
    assert float((lm.face[1, :2] - NOSE).norm()) < 8.0


def test_mask_and_pose(astronaut):
    image, lm = astronaut
    assert lm.mask.shape == image.shape[:2]
    for x, y in PERSON:
        assert float(lm.mask[y, x]) > 0.5, f"person point {(x, y)}"
    for x, y in BACKGROUND:
        assert float(lm.mask[y, x]) < 0.5, f"background point {(x, y)}"
    assert lm.pose is not None and lm.pose.shape == (33, 4)
    assert float((lm.pose[0, :2] - NOSE).norm()) < 15.0                   # pose nose


def test_two_people_take_the_posed_persons_face(astronaut):
    image, _ = astronaut
    canvas = torch.ones(512, 832, 3)
    canvas[:, :512] = image
    small = torch.nn.functional.interpolate(image.permute(2, 0, 1)[None], size=(320, 320), mode="area")[0]
    canvas[96:416, 512:] = small.permute(1, 2, 0)
    lm = detect(canvas)
    assert lm.notes == ["2 faces found; using the face of the person whose body pose was found"]
    assert float(lm.pose[0, 0]) < 512                                     # the pose found the large one ...
    assert float(lm.face[:, 0].max()) < 512                               # ... and the face is hers, on the left
    assert float((lm.face[[13, 14], :2].mean(0) - MOUTH).norm()) < 5.0


def test_the_face_box_is_the_one_holding_the_poses_nose():
    """A group photo: the largest face may be a neighbour's; the face taken is the posed person's."""
    from engine.avatar.landmarks import _the_posed_face

    def box(x, y, size):
        return type("Box", (), {"xmin": x, "ymin": y, "width": size, "height": size})()
    big, small = box(0.6, 0.1, 0.3), box(0.1, 0.2, 0.15)                  # relative to a 1000 x 800 photo
    nose = torch.zeros(33, 4)
    nose[0] = torch.tensor([170.0, 230.0, 0.0, 0.9])                      # (0.17, 0.29): in the small box
    assert _the_posed_face([big, small], nose, 1000, 800) is small
    assert _the_posed_face([big, small], None, 1000, 800) is big          # no pose: the largest
    hidden = nose.clone()
    hidden[0, 3] = 0.2
    assert _the_posed_face([big, small], hidden, 1000, 800) is big        # a nose the pose calls hidden
    away = nose.clone()
    away[0, :2] = torch.tensor([500.0, 700.0])
    assert _the_posed_face([big, small], away, 1000, 800) is big          # a nose in no box


def test_no_person_is_a_clear_error():
    ramp = torch.linspace(0, 1, 256)[None, :, None].expand(256, 256, 3).contiguous()
    with pytest.raises(ValueError, match="no person found"):
        detect(ramp)


def test_hands_follow_the_pose_wrists():
    pose = torch.zeros(33, 4)
    pose[15, :2] = torch.tensor([100.0, 300.0])                          # left wrist
    pose[16, :2] = torch.tensor([400.0, 300.0])                          # right wrist
    near_right = torch.zeros(21, 3); near_right[0, :2] = torch.tensor([390.0, 310.0])
    near_left = torch.zeros(21, 3); near_left[0, :2] = torch.tensor([110.0, 290.0])
    left, right = _assign_hands([near_right, near_left], pose)
    assert left is near_left and right is near_right
    assert _assign_hands([near_right], pose) == (None, near_right)
    assert _assign_hands([], pose) == (None, None)


def test_small_face_in_a_large_frame_is_found(astronaut):
    image, _ = astronaut
    canvas = torch.ones(1024, 1024, 3)
    small = torch.nn.functional.interpolate(image.permute(2, 0, 1)[None], size=(384, 384), mode="area")[0]
    canvas[600:984, 320:704] = small.permute(1, 2, 0)                    # a far-away person, face ~35 px wide
    lm = detect(canvas)
    assert lm.face is not None
    mouth = MOUTH * 0.75 + torch.tensor([320.0, 600.0])                   # the annotation, scaled and moved
    assert float((lm.face[[13, 14], :2].mean(0) - mouth).norm()) < 5.0


def test_a_pose_read_on_the_mirror_image_maps_back_onto_the_photo(astronaut):
    image, lm = astronaut
    mp = mediapipe_module()
    rgb = np.ascontiguousarray((image * 255 + 0.5).to(torch.uint8).numpy())
    with quiet_native_logs():
        mirror, _ = _pose_once(mp, rgb[:, ::-1])
    back = mirrored_back(mirror, rgb.shape[1])
    width = float((lm.pose[11, :2] - lm.pose[12, :2]).norm())             # ~150 px: a swap would show
    for j in (0, 2, 5, 7, 8, 11, 12):                                     # nose, eyes, ears, shoulders
        assert float((back[j, :2] - lm.pose[j, :2]).norm()) < 0.1 * width, j
    assert float(back[11, 0]) > float(back[12, 0])        # the person's left shoulder on the image right


def test_visible_body_points_on_the_background_are_counted():
    selfie = torch.zeros(200, 200)
    selfie[20:196, 60:141] = 1.0                          # the person as selfie segmentation sees them
    p = pose()
    assert misplaced(p, selfie) == 0
    p[16, :2] = torch.tensor([20.0, 115.0])               # a right wrist put on the background
    assert misplaced(p, selfie) == 1
    p[16, 3] = 0.4                                        # ... but mediapipe calls it hidden
    assert misplaced(p, selfie) == 0
    p[16, 3], p[15, :2] = 1.0, torch.tensor([250.0, 115.0])   # out of the frame is no evidence
    assert misplaced(p, selfie) == 1


def test_a_misplaced_reading_gets_a_second_look_at_the_mirror_image(astronaut, monkeypatch):
    """The reading with fewer visible points on the background is kept: here the first reading (doctored: its
    left wrist moved onto the wall) loses to the real one, read on the mirror image and mapped back."""
    image, lm = astronaut
    mp = mediapipe_module()
    rgb = np.ascontiguousarray((image * 255 + 0.5).to(torch.uint8).numpy())
    real = landmarks._pose_once
    seen = []

    def first_misplaced(mp_, img, confidence=0.5):
        p, seg = real(mp_, img, confidence)
        seen.append(img.strides[1] < 0)                   # read on the mirror image
        if not seen[-1]:
            p = p.clone()
            p[15, :2], p[15, 3] = torch.tensor([340.0, 100.0]), 0.9
        return p, seg
    monkeypatch.setattr(landmarks, "_pose_once", first_misplaced)
    with quiet_native_logs():
        with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
            selfie = torch.from_numpy(seg.process(rgb).segmentation_mask.astype(np.float32))
        chosen, chosen_seg = landmarks._pose(mp, rgb, selfie)
    assert seen == [False, True]
    assert misplaced(chosen, selfie) == 0 and chosen_seg.shape == selfie.shape
    assert float((chosen[11, :2] - lm.pose[11, :2]).norm()) < 15.0


def test_a_face_the_full_range_detector_misses_is_found_by_the_short_range_one(astronaut, monkeypatch):
    """A face filling a tight crop can escape the full-range model (a held-out close-up did); the short-range
    model is asked next. Here the full-range model is made blind: the mesh still lands on the pupils."""
    image, _ = astronaut
    fd = mediapipe_module().solutions.face_detection
    real = fd.FaceDetection
    asked = []

    class Blind:
        def __init__(self, model_selection=0, **kw):
            asked.append(model_selection)
            self.model, self.blind = real(model_selection=model_selection, **kw), model_selection == 1

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.model.close()

        def process(self, rgb):
            out = self.model.process(rgb)
            return type("NoFaces", (), {"detections": None})() if self.blind else out
    monkeypatch.setattr(fd, "FaceDetection", Blind)
    rgb = np.ascontiguousarray((image * 255 + 0.5).to(torch.uint8).numpy())
    face, n = landmarks.face_mesh(rgb)
    assert asked == [1, 0] and n == 1
    irises = face[[468, 473], :2]
    err = min((irises - PUPILS).norm(dim=-1).max(), (irises.flip(0) - PUPILS).norm(dim=-1).max())
    assert float(err) < 5.0


def test_a_person_the_detector_scores_low_gets_a_last_look_at_a_lower_threshold(astronaut, monkeypatch):
    """The pose detector scores greyscale messi5.jpg under its default 0.5. Here it is made to miss at the default
    (both looks): the last look, at LOW_CONFIDENCE, gives the real reading, unless its visible points lie on what
    the selfie mask calls background."""
    image, lm = astronaut
    mp = mediapipe_module()
    rgb = np.ascontiguousarray((image * 255 + 0.5).to(torch.uint8).numpy())
    real, asked = landmarks._pose_once, []

    def strict(mp_, img, confidence=0.5):
        asked.append(confidence)
        return real(mp_, img, confidence) if confidence < 0.5 else (None, None)
    monkeypatch.setattr(landmarks, "_pose_once", strict)
    with quiet_native_logs():
        with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
            selfie = torch.from_numpy(seg.process(rgb).segmentation_mask.astype(np.float32))
        chosen, chosen_seg = landmarks._pose(mp, rgb, selfie)
        assert asked[:2] == [0.5, 0.5] and set(asked[2:]) == {landmarks.LOW_CONFIDENCE[0]}   # photo or mirror
        assert landmarks.supported(chosen, selfie) and chosen_seg.shape == selfie.shape
        width = float((lm.pose[11, :2] - lm.pose[12, :2]).norm())         # ~150 px
        for j in (0, 11, 12):
            assert float((chosen[j, :2] - lm.pose[j, :2]).norm()) < 0.1 * width, j
        asked.clear()
        assert landmarks._pose(mp, rgb, torch.zeros_like(selfie)) == (None, None)
        assert asked == [0.5, 0.5] + [c for c in landmarks.LOW_CONFIDENCE for _ in range(2)]   # photo, mirror


def test_a_face_no_detector_finds_is_meshed_where_the_pose_sees_it(astronaut, monkeypatch):
    """Both face detectors made blind (greyscale messi5.jpg's 18 px face: neither finds it): a far-away person's
    face mesh comes from a crop about the pose's face points, on the hand-annotated mouth; with no pose, none."""
    image, _ = astronaut
    fd = mediapipe_module().solutions.face_detection

    class Blind:
        def __init__(self, **kw):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def process(self, rgb):
            return type("NoFaces", (), {"detections": None})()
    monkeypatch.setattr(fd, "FaceDetection", Blind)
    canvas = torch.ones(1024, 1024, 3)
    small = torch.nn.functional.interpolate(image.permute(2, 0, 1)[None], size=(256, 256), mode="area")[0]
    canvas[700:956, 400:656] = small.permute(1, 2, 0)                    # face ~25 px wide
    lm = detect(canvas)
    assert lm.face is not None and lm.pose is not None
    mouth = MOUTH * 0.5 + torch.tensor([400.0, 700.0])
    assert float((lm.face[[13, 14], :2].mean(0) - mouth).norm()) < 3.0
    rgb = np.ascontiguousarray((canvas * 255 + 0.5).to(torch.uint8).numpy())
    assert landmarks.face_mesh(rgb) == (None, 0)


def test_a_pose_hint_from_the_whole_photo_stands_in_where_the_crop_finds_no_one(astronaut, monkeypatch):
    """personalize reads the pose on the whole photo before cropping; where the crop finds no one at any
    threshold (greyscale messi5.jpg's crop: only at 0.05, where boxes and squirrels pass too), that reading,
    mapped into the crop, is taken, if the crop's selfie mask supports it."""
    image, lm = astronaut
    mp = mediapipe_module()
    rgb = np.ascontiguousarray((image * 255 + 0.5).to(torch.uint8).numpy())
    monkeypatch.setattr(landmarks, "_pose_once", lambda mp_, img, confidence=0.5: (None, None))
    with quiet_native_logs():
        with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
            selfie = torch.from_numpy(seg.process(rgb).segmentation_mask.astype(np.float32))
    hint = lm.pose.clone()
    hint[[13, 15, 17, 19, 21], 3] = 0.9                   # her left arm's points visible too: 6 on her
    seg = torch.rand(*selfie.shape)
    got, got_seg = landmarks._pose(mp, rgb, selfie, (hint, seg))
    assert got is hint and got_seg is seg
    assert landmarks._pose(mp, rgb, selfie, None) == (None, None)
    away = hint.clone()
    away[11:, :2] = torch.tensor([340.0, 100.0])          # its body points put on the wall beside her head
    assert landmarks._pose(mp, rgb, selfie, (away, seg)) == (None, None)


def test_a_pose_reading_maps_into_a_crop():
    from engine.avatar.landmarks import pose_in_crop
    pose = torch.zeros(33, 4)
    pose[:, 0], pose[:, 1], pose[:, 2] = 120.0, 60.0, -30.0
    seg = torch.zeros(100, 200)
    seg[50:70, 110:130] = 1.0                                             # around the pose's points
    p, s = pose_in_crop((pose, seg), (100, 40, 200, 100), (120, 200))     # a 100 x 60 box shown at 2x
    assert torch.allclose(p[0, :3], torch.tensor([40.0, 40.0, -60.0]))
    assert s.shape == (120, 200) and float(s[40, 40]) > 0.9 and float(s[5, 150]) == 0.0
    assert pose_in_crop(None, (0, 0, 10, 10), (10, 10)) is None

