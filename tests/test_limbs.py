"""Articulated arms and legs (issue 18) on a tiny synthetic skeleton: arm Gaussians ride their own arm's bones and
turn with them, and "raise" turns the arm chain up about the shoulder while the other arm keeps still."""
import math

import pytest
import torch

pytest.importorskip("cv2")
from engine.avatar.limbs import (BONES, TORSO, LimbRig, body_parts, bone_ends, limb_skinning,  # noqa: E402
                                 quat_mul, rotvec_quat)
from engine.avatar.skinning import blend_translations  # noqa: E402
from engine.render.gaussians import Gaussians  # noqa: E402
from skeleton import JOINTS, pose  # noqa: E402


def test_body_parts_label_each_limb_and_the_torso():
    names = {n: i for i, (n, _, _) in enumerate(BONES)}
    pts = torch.tensor([[74.0, 102.0], [126.0, 102.0], [78.0, 75.0], [100.0, 90.0], [88.0, 170.0], [85.0, 190.0]])
    part = body_parts(pts, pose()).tolist()
    assert part == [names["right_forearm"], names["left_forearm"], names["right_upper_arm"], TORSO,
                    names["right_shin"], names["right_foot"]]


def test_an_arm_held_across_the_chest_is_the_arm_not_the_torso():
    """The right forearm raised across the chest, inside the torso quadrilateral (basketball2.png: a ball held at
    the left shoulder). The pixels along it, within limb_radius (0.15 x 40 px) of its bone, are the forearm; the
    chest a little further off is torso. The old labelling made everything inside the quadrilateral torso, so the
    arm had no Gaussians of its own and "raise right hand" turned the hand alone."""
    names = {n: i for i, (n, _, _) in enumerate(BONES)}
    p = pose()
    p[14, :2] = torch.tensor([85.0, 100.0])                                 # right elbow, low on the chest
    p[16, :2] = torch.tensor([115.0, 80.0])                                 # right wrist, up at the left shoulder
    on_arm = torch.tensor([[100.0, 90.0], [109.0, 84.0]])                   # on the forearm's bone
    off_arm = torch.tensor([[100.0, 108.0]])                                # 13 px below it: chest
    assert body_parts(on_arm, p).tolist() == [names["right_forearm"]] * 2
    assert body_parts(off_arm, p).tolist() == [TORSO]


def _avatar_particles():
    """World particles at the joints (x, y from the photo, z = 10) with their pose names."""
    names = [f"pose:{j}" for j in range(11, 33)]
    particles = torch.tensor([[*JOINTS[j], 10.0] for j in range(11, 33)], dtype=torch.float32)
    return particles, names


def test_an_arm_gaussian_follows_only_its_own_bone():
    particles, names = _avatar_particles()
    pix = torch.tensor([[76.0, 102.0], [124.0, 102.0], [100.0, 90.0]])     # right forearm, left forearm, torso
    means = torch.cat([pix, torch.full((3, 1), 10.0)], 1)
    regions = torch.zeros(3, dtype=torch.long)                              # body
    K = len(names)
    old_index = torch.tensor([[names.index("pose:16"), names.index("pose:15"), 0, 1]] * 3)   # any old rows
    old_weight = torch.full((3, 4), 0.25)
    index, weight, bones = limb_skinning(pix, means, regions, pose(), particles, names, old_index, old_weight)
    assert torch.allclose(weight.sum(1), torch.ones(3))
    used = [{names[int(i)] for i, w in zip(index[r], weight[r]) if w > 0} for r in range(3)]
    assert used[0] <= {"pose:14", "pose:16"} and used[1] <= {"pose:13", "pose:15"}
    assert used[2] <= {"pose:11", "pose:12", "pose:23", "pose:24"}         # the torso never follows an elbow
    assert bones.tolist() == [1, 3, -1]                                     # right_forearm, left_forearm, none
    # the right forearm Gaussian sits at t ~ 0.48 along elbow -> wrist: weights (1 - t, t)
    w = {names[int(i)]: float(x) for i, x in zip(index[0], weight[0]) if x > 0}
    assert w["pose:16"] == pytest.approx(12 / 25, abs=0.02) and w["pose:14"] == pytest.approx(13 / 25, abs=0.02)
    assert K == 22
    # the torso behind an arm (engine.avatar.behind_arms) rides the torso, though it lies on the forearm's pixel
    index, weight, bones = limb_skinning(pix, means, regions, pose(), particles, names, old_index, old_weight,
                                         torso_only=torch.tensor([True, False, False]))
    assert bones.tolist() == [-1, 3, -1]
    assert {names[int(i)] for i, w in zip(index[0], weight[0]) if w > 0} <= {"pose:11", "pose:12", "pose:23",
                                                                             "pose:24"}


def test_a_hand_without_hand_points_rides_the_forearm_rigidly():
    particles, names = _avatar_particles()
    keep = [n for n in names if n not in {f"pose:{j}" for j in (17, 18, 19, 20, 21, 22)}]
    particles = particles[[names.index(n) for n in keep]]
    pix = torch.tensor([[73.0, 124.0]])                                     # beyond the right wrist
    means = torch.cat([pix, torch.full((1, 1), 10.0)], 1)
    index, weight, bones = limb_skinning(pix, means, torch.tensor([4]), pose(), particles, keep,
                                         torch.zeros(1, 4, dtype=torch.long), torch.full((1, 4), 0.25))
    assert bones.tolist() == [1]
    assert {keep[int(i)] for i, w in zip(index[0], weight[0]) if w > 0} == {"pose:16"}


def test_the_rig_turns_a_gaussian_with_its_bone():
    """A forearm turned 90 degrees about the elbow: the skinning alone moves the point on the bone, the rig also
    turns its offset from the bone (else the arm flattens into a ribbon) and its orientation."""
    names = ["pose:12", "pose:14", "pose:16"]
    particles = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])   # shoulder, elbow, wrist
    means = torch.tensor([[0.1, 0.5, 0.0]])                                 # beside the forearm, halfway
    index, weight = torch.tensor([[1, 2, 1, 1]]), torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    motion = torch.zeros(3, 3)
    motion[2] = torch.tensor([1.0, -1.0, 0.0])                              # wrist to (1, 0, 0)
    g = Gaussians(means + blend_translations(motion, index, weight), torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
                  torch.full((1, 3), 0.01), torch.ones(1), torch.zeros(1, 1, 3))
    assert torch.allclose(g.means, torch.tensor([[0.6, 0.0, 0.0]]))         # translation only: not turned
    rig = LimbRig(particles, names, means, torch.tensor([1]))
    out = rig.apply(g, motion)
    assert torch.allclose(out.means, torch.tensor([[0.5, -0.1, 0.0]]), atol=1e-6)
    expected = rotvec_quat(torch.tensor([[0.0, 0.0, -math.pi / 2]]))
    assert torch.allclose(out.quats, quat_mul(expected, g.quats), atol=1e-6)
    assert torch.equal(rig.apply(g, torch.zeros(3, 3)).means, g.means)     # at rest: unchanged


def test_a_leaning_bone_turned_about_the_view_axis_does_not_roll():
    """A forearm leaning out of the image plane, turned 150 degrees about the view axis: the Gaussians beside it
    turn with it about that axis too. The shortest arc between the two directions would roll the limb about
    itself, turning its camera-facing relief sideways (a speckled, see-through arm)."""
    from engine.avatar.limbs import rotvec_matrix
    names = ["pose:12", "pose:14", "pose:16"]
    particles = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.3]])
    side = torch.nn.functional.normalize(torch.tensor([0.0, -0.3, 1.0]), dim=0)   # off the bone, towards z
    means = (particles[1] + 0.5 * (particles[2] - particles[1]) + 0.1 * side)[None]
    Rz = rotvec_matrix(torch.tensor([0.0, 0.0, math.radians(150)]))
    motion = torch.zeros(3, 3)
    motion[2] = Rz @ particles[2] - particles[2]
    index, weight = torch.tensor([[1, 2, 1, 1]]), torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    g = Gaussians(means + blend_translations(motion, index, weight), torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
                  torch.full((1, 3), 0.01), torch.ones(1), torch.zeros(1, 1, 3))
    out = LimbRig(particles, names, means, torch.tensor([1])).apply(g, motion)
    assert torch.allclose(out.means[0], Rz @ means[0], atol=1e-5)


def test_bone_ends_name_the_particles():
    ends = bone_ends(["pose:14", "pose:12"])
    assert ends[0].tolist() == [1, 0] and ends[1].tolist() == [0, -1]


def _arm_particles():
    names = ["pose:11", "pose:12", "pose:13", "pose:14", "pose:15", "pose:16"] + \
        [f"hand_right:{i}" for i in range(21)]
    p = [[1.0, 0.0, 5.0], [-1.0, 0.0, 5.0], [1.1, 1.0, 5.0], [-1.1, 1.0, 5.0], [1.2, 2.0, 5.0], [-1.2, 2.0, 5.0]]
    p += [[-1.2 + 0.01 * i, 2.1 + 0.02 * i, 5.0] for i in range(21)]
    return torch.tensor(p), names


def test_raise_turns_the_right_arm_up_and_leaves_the_left():
    from engine.motion.versa.arms import raise_arm
    particles, names = _arm_particles()
    move = raise_arm(particles, names, "right", torch.tensor([0.0, 0.5, 1.0]))
    assert float(move[0].abs().max()) == 0.0                                # at rest
    up = particles + move[-1]
    S, E, W = up[1], up[3], up[5]
    assert float(W[1]) < float(S[1]) - 1.0, "the right wrist is not above the right shoulder"
    assert float(E[1]) < float(S[1]) and float(E[0]) < float(S[0])         # the elbow out to the side, up
    for a, b in ((1, 3), (3, 5)):                                           # the bones keep their lengths
        assert float((up[a] - up[b]).norm()) == pytest.approx(float((particles[a] - particles[b]).norm()), abs=1e-5)
    rest_hand, up_hand = particles[6:] - particles[5], up[6:] - W           # the hand turns with the wrist
    assert torch.allclose(rest_hand.norm(dim=1), up_hand.norm(dim=1), atol=1e-5)
    assert float(move[:, [0, 2, 4]].abs().max()) == 0.0                     # the left arm
    mid = particles + move[1]
    assert float((mid[5] - mid[3]).norm()) == pytest.approx(float((particles[5] - particles[3]).norm()), abs=1e-5)


def test_a_command_moves_only_the_named_arm():
    from engine.avatar.particles import canonical_names
    from engine.motion.versa.arms import arm_gesture
    particles, names = _arm_particles()
    slots = canonical_names()
    where = [slots.index(n) for n in names]

    def to_canonical(world):
        out = world.new_zeros(*world.shape[:-2], len(slots), 3)
        out[..., where, :] = world
        return out
    prior = torch.randn(48, len(slots), 3)                                 # the prior's gesture, leaking everywhere
    out = arm_gesture("raise right hand", prior, particles, names, to_canonical)
    left = [slots.index(n) for n in ("pose:11", "pose:13", "pose:15", "pose:17", "hand_left:0")]
    assert float(out[:, left].abs().max()) == 0.0
    knee = slots.index("pose:26")
    assert torch.equal(out[:, knee], prior[:, knee])                        # not an arm: the prior's
    wrist, shoulder = slots.index("pose:16"), slots.index("pose:12")
    peak = (particles[5] + out[24, wrist])[1]
    assert float(peak) < float(particles[1, 1]) and float(out[:, shoulder].abs().max()) == 0.0


def test_an_arm_without_a_wrist_goes_up_straight():
    from engine.motion.versa.arms import STRAIGHT_ARM_UP_DEG, raise_arm
    particles, names = _arm_particles()
    particles, names = particles[:4], names[:4]                            # shoulders and elbows only
    up = particles + raise_arm(particles, names, "right", torch.tensor([1.0]))[0]
    d = up[3] - up[1]
    assert math.degrees(math.atan2(-float(d[1]), -float(d[0]))) == pytest.approx(STRAIGHT_ARM_UP_DEG, abs=1e-3)


def test_an_arm_without_an_elbow_keeps_the_prior_s_motion():
    from engine.avatar.particles import canonical_names
    from engine.motion.versa.arms import arm_gesture, raise_arm
    particles, names = _arm_particles()
    keep = [i for i, n in enumerate(names) if n != "pose:14"]
    particles, names = particles[keep], [names[i] for i in keep]
    assert raise_arm(particles, names, "right", torch.ones(3)) is None
    slots = canonical_names()
    prior = torch.randn(48, len(slots), 3)
    out = arm_gesture("raise right hand", prior, particles, names, lambda w: None)
    wrist = slots.index("hand_right:0")
    assert torch.equal(out[:, wrist], prior[:, wrist])


def test_the_torso_behind_an_arm_lies_behind_it_in_the_torso_s_colour():
    from engine.avatar.behind_arms import BEHIND, REACH, STEP, behind_arms
    from engine.avatar.regions import BODY, HAIR
    H = W = 200
    person = torch.zeros(H, W, dtype=torch.bool)
    regions = torch.full((H, W), HAIR)
    image = torch.zeros(H, W, 3)
    person[55:125, 80:121] = True                                           # the torso (shoulders to hips)
    image[55:125, 80:121] = torch.tensor([0.8, 0.1, 0.1])                   # a red shirt
    person[60:118, 66:80] = True                                            # the right arm hanging beside it
    image[60:118, 66:80] = torch.tensor([0.1, 0.1, 0.8])                    # a blue sleeve
    person[60:118, 20:30] = True                                            # a blue stick far from the torso
    image[60:118, 20:30] = torch.tensor([0.1, 0.1, 0.8])
    regions[person] = BODY
    front, back = torch.full((H, W), 10.0), torch.full((H, W), 30.0)
    K = torch.tensor([[200.0, 0, 100], [0, 200.0, 100], [0, 0, 1]])
    g, px = behind_arms(image, person, regions, pose(), (front, back), K, 2.5)
    part = body_parts(px.float() + 0.5, pose())
    # arm pixels only: the right sleeve's, and the torso's right edge, which lies on the left arm's bones
    assert len(px) > 20 and bool(torch.isin(part, torch.tensor([0, 1, 2, 3])).all())
    assert int((px[:, 0] < 80).sum()) > 0.6 * len(px)
    assert int(px[:, 0].min()) >= 80 - REACH * 40 - 1 and bool((px % STEP == 0).all())  # near the torso, sparse
    rgb = 0.5 + 0.28209479177387814 * g.sh[:, 0]
    assert float((rgb - torch.tensor([0.8, 0.1, 0.1])).abs().max()) < 0.02             # the shirt, not the sleeve
    z_front, z_back = 2.5 - 10.0 * 2.5 / 200.0, 2.5 + 30.0 * 2.5 / 200.0
    torch.testing.assert_close(g.means[:, 2], torch.full((len(g),), z_front + BEHIND * (z_back - z_front)))
    assert len(behind_arms(image, person, regions, None, (front, back), K, 2.5)[0]) == 0    # no pose, no layer


def test_what_hangs_beside_an_arm_beyond_its_reach_rides_the_torso():
    """Long hair over an arm, beside the body: nearest the upper arm, but further from its bone than an arm is
    thick (ARM_REACH body sizes). It stays with the torso when the arm turns; the sleeve goes with the arm."""
    from engine.avatar.limbs import ARM_REACH, body_scale
    particles, names = _avatar_particles()
    scale = body_scale(pose())                                              # 40 px: the shoulder width
    # the right upper arm runs (80, 60) -> (75, 90); points level with its middle, 0.2 and 0.45 body sizes out
    pix = torch.tensor([[77.5 - 0.2 * scale, 75.0], [77.5 - 0.45 * scale, 75.0]])
    assert 0.2 < ARM_REACH < 0.45
    assert body_parts(pix, pose()).tolist() == [0, 0]                       # both nearest the right upper arm
    means = torch.cat([pix, torch.full((2, 1), 10.0)], 1)
    old_index, old_weight = torch.zeros(2, 4, dtype=torch.long), torch.full((2, 4), 0.25)
    index, weight, bones = limb_skinning(pix, means, torch.zeros(2, dtype=torch.long), pose(), particles, names,
                                         old_index, old_weight)
    assert bones.tolist() == [0, -1]
    assert {names[int(i)] for i, w in zip(index[1], weight[1]) if w > 0} <= {"pose:11", "pose:12", "pose:23",
                                                                             "pose:24"}


def test_a_hand_past_the_wrist_rides_the_forearm_though_it_is_beyond_the_arm_s_reach():
    """A fist the hand detector missed (BODY pixels) lies past the wrist along the forearm, further from the
    wrist than an arm is thick: it stays on the forearm, so "raise right hand" takes it along. Beside the
    forearm at the same distance (hair) it is torso."""
    from engine.avatar.limbs import ARM_REACH, HAND_LENGTH, body_scale
    scale = body_scale(pose())                                              # 40 px
    wrist, elbow = torch.tensor(JOINTS[16], dtype=torch.float32), torch.tensor(JOINTS[14], dtype=torch.float32)
    along = (wrist - elbow) / (wrist - elbow).norm()                        # the right forearm: (75, 90) -> (73, 115)
    side = torch.tensor([-along[1], along[0]])
    far = 0.4 * scale                                                       # over ARM_REACH x scale (12 px) ...
    assert ARM_REACH * scale < far < HAND_LENGTH * float((wrist - elbow).norm())   # ... within a hand's length
    pix = torch.stack([wrist + far * along, wrist + far * side - 0.3 * far * along])
    names = {n: i for i, (n, _, _) in enumerate(BONES)}
    assert body_parts(pix, pose()).tolist() == [names["right_forearm"]] * 2          # nearest the forearm ...
    assert body_parts(pix, pose(), arm_reach=ARM_REACH).tolist() == [names["right_forearm"], TORSO]   # ... but
