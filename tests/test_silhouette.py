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
    out = person_alone(selfie, core, pose())
    assert float(out[150, 20]) == 0.0 and float(out[70, 30]) == 0.0, "the neighbour stays"
    assert float(out[70, 67]) == 1.0, "the fringe within NEAR (0.12 x 40 px) of the core is lost"
    assert float(out[120, 170]) == pytest.approx(0.8), "the held helmet is lost"
    # the same piece pressed against the side but far from both hands is someone else
    selfie[95:140, 131:175] = 0.0
    selfie[40:90, 131:175] = 0.8
    assert float(person_alone(selfie, core, pose())[70, 160]) == 0.0


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
