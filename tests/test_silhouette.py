"""The person alone (issue 18) on tiny synthetic masks: no ground, far blobs or overlays unless held; and a
full-body photo is cropped to the person before it is downscaled."""
import pytest
import torch

pytest.importorskip("cv2")
from engine.avatar.photo import person_box  # noqa: E402
from engine.avatar.silhouette import person_alone  # noqa: E402
from skeleton import pose  # noqa: E402


def test_the_person_alone_drops_the_ground_and_a_far_blob_but_keeps_what_is_held():
    core = torch.zeros(200, 200)
    core[20:196, 70:131] = 1.0                          # the body, as pose segmentation sees it
    selfie = core.clone()
    selfie[190:200, :] = 1.0                            # the ground the feet stand on
    selfie[20:40, 170:190] = 1.0                        # a logo far from the person
    selfie[105:130, 50:70] = 0.9                        # something held at the right hand (wrist 16 at 73, 115)
    out = person_alone(selfie, core, pose())
    assert float(out[30, 180]) == 0.0, "the far blob stays"
    assert float(out[198, 10]) == 0.0 and float(out[198, 190]) == 0.0, "the ground stays"
    assert float(out[115, 55]) == pytest.approx(0.9), "the held thing is lost"
    assert float(out[100, 100]) == 1.0 and float(out[185, 88]) == 1.0      # torso and a foot
    # the old mask was the selfie mask as it came: blob and ground included
    assert float(selfie[30, 180]) == 1.0 and float(selfie[198, 10]) == 1.0


def test_a_neighbour_pressed_against_the_side_is_dropped_but_a_held_helmet_stays():
    core = torch.zeros(200, 200)
    core[20:196, 70:131] = 1.0
    selfie = core.clone()
    selfie[45:100, 0:70] = 1.0                          # someone beside the person, touching the right arm
    selfie[45:200, 0:40] = 1.0                          # ... and running out of the frame
    selfie[95:140, 131:175] = 0.8                       # a helmet at the left hand (15 at 127, 115), 44 px wide
    selfie[40:44, 66:70] = 1.0                          # a fringe of hair, 4 px wide, along the right shoulder
    out = person_alone(selfie, core, pose())
    assert float(out[150, 20]) == 0.0 and float(out[70, 30]) == 0.0, "the neighbour stays"
    # the neighbour goes whole: the old mask kept its band within NEAR (0.12 x 40 px) of the core
    assert float(out[70, 67]) == 0.0, "a band of the neighbour stays along the arm"
    assert float(out[42, 67]) == 1.0, "the fringe within NEAR of the core is lost"
    assert float(out[120, 170]) == pytest.approx(0.8), "the held helmet is lost"
    # the same piece pressed against the side but far from both hands is someone else
    selfie[95:140, 131:175] = 0.0
    selfie[40:90, 131:175] = 0.8
    out = person_alone(selfie, core, pose())
    assert float(out[70, 160]) == 0.0 and float(out[70, 133]) == 0.0


def test_background_along_the_arm_that_reaches_the_hand_is_not_held():
    """A grey photo's crowd behind an arm: it touches the core along the upper arm and the torso, and at the hand
    too, all of it within REACH of the hand. Under half of its contact (31 of its 72 rows) is within HELD of the hand,
    so it is not held, and three quarters of it lies beyond NEAR, so its band along the arm goes as well (the old
    mask kept it all: one contact pixel near a hand made a piece held)."""
    core = torch.zeros(200, 200)
    core[20:196, 70:131] = 1.0
    selfie = core.clone()
    selfie[54:126, 131:152] = 0.8
    out = person_alone(selfie, core, pose())
    assert float(out[60, 145]) == 0.0 and float(out[120, 140]) == 0.0, "the background is held"
    assert float(out[100, 133]) == 0.0, "its band along the arm stays"
    assert float(out[100, 120]) == 1.0
    # the crop's lenient rules (strict=False) keep it: a crop that cut off a held thing would lose it for good
    assert float(person_alone(selfie, core, pose(), strict=False)[60, 145]) == pytest.approx(0.8)


def test_without_a_pose_only_pieces_holding_the_face_stay():
    selfie = torch.zeros(100, 100)
    selfie[10:50, 10:50] = 1.0
    selfie[80:90, 80:90] = 1.0                          # a watermark
    face = torch.tensor([[30.0, 30.0], [35.0, 32.0]])
    out = person_alone(selfie, None, None, face)
    assert float(out[30, 30]) == 1.0 and float(out[85, 85]) == 0.0


def test_a_full_body_photo_is_cropped_to_the_person():
    mask = torch.zeros(342, 548)
    mask[60:335, 65:460] = 1.0                           # messi5.jpg's player: the crop keeps about 82% of it
    box = person_box(mask)
    assert box is not None and box[0] > 0 and box[2] < 548
