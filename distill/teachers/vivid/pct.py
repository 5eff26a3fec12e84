"""PCT, VividAnimator's training-free Pose Calibration Trick (WACV 2026): fit a driving skeleton to the reference.

A driving 2D skeleton sequence [T, J, 2] from another person has other proportions and another place in the frame
than the reference [J, 2]; PCT maps it onto the reference's body before it conditions the animation:
1. global scale from the torso anchors: r_x = ref x-extent / driving x-extent, r_y = ref y-extent / driving
   y-extent of the anchors (shoulders and hips) in the calibration frame; every joint of every frame is scaled
   per axis about the driving torso centre and moved onto the reference torso centre:
       g = (p - c_drv) * (r_x, r_y) + c_ref
2. segment-wise proportions: for each bone (i -> j), rho_ij = l_ij^ref / l_ij with l_ij the bone's length in the
   globally scaled calibration frame. Walking the kinematic tree from the torso (root: the neck), each child is
   re-placed from its already calibrated parent along the bone's driving direction with the reference ratio:
       out_j = out_i + rho_ij * (g_j - g_i)         (every frame; the bone keeps its motion, takes the ref length)
3. translation: the torso-centre difference between the reference and the calibrated calibration frame is added
   to every frame.
A driving pose that is the reference scaled per axis and shifted comes back as the reference exactly (rho = 1).

Joint layout: OpenPose BODY-18, the body keypoints DWPose / OpenPose give to pose-driven animation pipelines:
    0 nose, 1 neck, 2 r_shoulder, 3 r_elbow, 4 r_wrist, 5 l_shoulder, 6 l_elbow, 7 l_wrist, 8 r_hip, 9 r_knee,
    10 r_ankle, 11 l_hip, 12 l_knee, 13 l_ankle, 14 r_eye, 15 l_eye, 16 r_ear, 17 l_ear.
Torso anchors: both shoulders and both hips. With a hip unseen (NaN) in either skeleton (a close half-body shot),
r_y = r_x (isotropic) and the centre is that of the seen anchors. NaN joints stay NaN; a bone with a NaN or zero
length gets rho = 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

ROOT = 1                                   # the neck
TORSO = (2, 5, 8, 11)                      # shoulders, hips
SHOULDERS = (2, 5)
# (parent, child) in walking order from the neck: torso, arms, legs, head
BONES = ((1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
         (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))


@dataclass
class Calibration:
    poses: Tensor          # [T, J, 2] calibrated sequence
    scale: Tensor          # [2] (r_x, r_y)
    rho: Tensor            # [len(bones)] segment ratios l_ref / l_drv
    translation: Tensor    # [2] the step-3 shift


def _seen(p: Tensor) -> Tensor:
    return torch.isfinite(p).all(-1)


def torso_frame(reference: Tensor, driving: Tensor, torso=TORSO, shoulders=SHOULDERS) -> tuple[Tensor, Tensor, Tensor]:
    """reference, driving [J, 2] -> (scale [2] = (r_x, r_y), ref torso centre [2], driving torso centre [2])."""
    if not bool(_seen(reference[list(shoulders)]).all() & _seen(driving[list(shoulders)]).all()):
        raise ValueError("reference/driving: both shoulders must be seen (finite) for the torso scale")
    anchors = [k for k in torso if bool(_seen(reference[k])) and bool(_seen(driving[k]))]
    ref, drv = reference[anchors], driving[anchors]
    ext_ref = ref.amax(0) - ref.amin(0)
    ext_drv = drv.amax(0) - drv.amin(0)
    if float(ext_drv[0]) <= 0 or float(ext_ref[0]) <= 0:
        raise ValueError("driving: the shoulders have no horizontal extent (a side view); no torso scale")
    r_x = ext_ref[0] / ext_drv[0]
    r_y = ext_ref[1] / ext_drv[1] if len(anchors) == len(torso) and float(ext_drv[1]) > 0 else r_x
    return torch.stack([r_x, r_y]), ref.mean(0), drv.mean(0)


def segment_ratios(reference: Tensor, driving: Tensor, bones=BONES) -> Tensor:
    """rho_ij = |ref_j - ref_i| / |drv_j - drv_i| per bone -> [len(bones)] (1 where undefined)."""
    i = torch.tensor([b[0] for b in bones])
    j = torch.tensor([b[1] for b in bones])
    l_ref = (reference[j] - reference[i]).norm(dim=-1)
    l_drv = (driving[j] - driving[i]).norm(dim=-1)
    rho = l_ref / l_drv
    ok = torch.isfinite(rho) & (l_drv > 0) & (l_ref > 0)
    return torch.where(ok, rho, torch.ones_like(rho))


def _check_tree(bones, root: int, num_joints: int) -> None:
    placed = {root}
    for parent, child in bones:
        if not (0 <= parent < num_joints and 0 <= child < num_joints):
            raise ValueError(f"bones: joint index out of range 0..{num_joints - 1} in {(parent, child)}")
        if parent not in placed:
            raise ValueError(f"bones: parent {parent} of {(parent, child)} is not placed yet (list bones from the "
                             f"root {root} outwards)")
        if child in placed:
            raise ValueError(f"bones: joint {child} is placed twice (the bones must form a tree)")
        placed.add(child)


def calibrate_pose(driving: Tensor, reference: Tensor, bones=BONES, root: int = ROOT, torso=TORSO,
                   shoulders=SHOULDERS, frame: int = 0) -> Calibration:
    """driving [T, J, 2], reference [J, 2] (pixels or fractions, any consistent unit) -> Calibration.

    `frame` is the driving frame whose torso and bone lengths are measured (the steps in the module docstring)."""
    # 0. inputs
    driving = torch.as_tensor(driving, dtype=torch.float64)
    reference = torch.as_tensor(reference, dtype=torch.float64)
    if driving.dim() != 3 or driving.shape[-1] != 2:
        raise ValueError(f"driving: expected [T, J, 2], got {list(driving.shape)}")
    if reference.shape != driving.shape[1:]:
        raise ValueError(f"reference: expected [{driving.shape[1]}, 2] like the driving joints, "
                         f"got {list(reference.shape)}")
    if not 0 <= frame < driving.shape[0]:
        raise ValueError(f"frame: expected 0 <= frame < {driving.shape[0]}, got {frame}")
    _check_tree(bones, root, driving.shape[1])
    # 1. global per-axis scale about the torso centres
    scale, c_ref, c_drv = torso_frame(reference, driving[frame], torso, shoulders)
    g = (driving - c_drv) * scale + c_ref
    # 2. segment-wise proportions, walking the tree from the root
    rho = segment_ratios(reference, g[frame], bones)
    out = g.clone()
    for (i, j), r in zip(bones, rho):
        out[:, j] = out[:, i] + r * (g[:, j] - g[:, i])
    # 3. translation: torso centres agree in the calibration frame
    anchors = [k for k in torso if bool(_seen(reference[k])) and bool(_seen(out[frame, k]))]
    shift = reference[anchors].mean(0) - out[frame, anchors].mean(0)
    out = out + shift
    return Calibration(out.float(), scale.float(), rho.float(), shift.float())
