"""Limbs: the arms and legs as bones between pose control particles, so that they articulate.

A bone runs between two mediapipe pose joints (BONES: shoulder -> elbow -> wrist, hip -> knee -> ankle -> toes).
personalize labels every body Gaussian by the part of the photo it sits on (`body_parts`: the nearest bone
segment in 2D, or the torso, the quadrilateral of shoulders and hips) and `limb_skinning` binds it:

    a bone Gaussian     to the bone's two joint particles a, b with weights (1 - t, t), t its place along the
                        bone (0 at a, 1 at b, clamped), so it follows a + t (b' - a'); a part whose bone lacks
                        a particle rides its parent bone (a forearm with no wrist in the photo is carried
                        rigidly by the upper arm) or, failing that, the torso
    a hand Gaussian     to the 21 hand points (and pose wrist/fingers) of its own hand, when the photo shows
                        them; otherwise it rides the forearm, rigidly beyond the wrist
    a torso Gaussian    to the torso particles (shoulders, hips) only: an arm's motion never drags the torso;
                        so is a body Gaussian nearest an arm but over ARM_REACH body sizes from its bone (long
                        hair hanging beside the arm)

Skinning is translation-only (engine.avatar.skinning), which keeps a point on the segment on the moved segment
but leaves its offset from the bone unrotated: a raised arm would flatten into a ribbon. So the avatar also
stores each Gaussian's bone (`Avatar.bones` [N], -1 for none) and `LimbRig` adds, per frame, the rotation of
the bone to that offset and to the Gaussian's own orientation. Two joints fix a bone's direction but not its
roll about itself; the shortest arc between two directions that both lean out of the image plane rolls the
limb, and a relief shell rolled sideways shows its edge (a speckled, see-through arm). So the rotation is
`facing_rotation`: the turn about the view axis between the two directions' azimuths, then the small tilt
left, which keeps what faced the camera facing it. Near a joint the rotation is blended half-and-half with the
neighbouring bone's (the torso counts as a bone that never turns), so an elbow bends without a crease.

Pose indices follow mediapipe: even = the person's right, odd = the person's left.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from engine.avatar.bundle import REGIONS
from engine.avatar.skinning import skin_weights
from engine.render.gaussians import Gaussians

# (name, joint a, joint b) in mediapipe pose indices; a is the end nearer the body
BONES = (("right_upper_arm", 12, 14), ("right_forearm", 14, 16),
         ("left_upper_arm", 11, 13), ("left_forearm", 13, 15),
         ("right_thigh", 24, 26), ("right_shin", 26, 28), ("right_foot", 28, 32),
         ("left_thigh", 23, 25), ("left_shin", 25, 27), ("left_foot", 27, 31))
PARENT = (-1, 0, -1, 2, -1, 4, 5, -1, 7, 8)     # -1: the torso
ARMS, LEGS = frozenset(range(0, 4)), frozenset(range(4, 10))
TORSO = len(BONES)                              # the part id of the torso (bone ids are 0..9)
TORSO_JOINTS = (11, 12, 24, 23)                 # a quadrilateral, in order around it
HAND_POINTS = {"left": (15, 17, 19, 21), "right": (16, 18, 20, 22)}
BODY, HANDS = REGIONS.index("body"), REGIONS.index("hands")   # engine.avatar.regions' ids
BLEND = 0.15                                    # share of a bone's length, at each end, where rotations blend
ARM_REACH = 0.3                                 # x body_scale: an arm's Gaussians lie at most this far from its bone
FOREARMS = [i for i, (name, _, _) in enumerate(BONES) if name.endswith("forearm")]
HAND_LENGTH = 0.8                               # x the forearm: how far a hand reaches past the wrist (an adult hand,
                                                # wrist crease to fingertip, ~19 cm, is ~0.7 of the elbow-wrist ~26 cm:
                                                # Gordon et al., ANSUR II anthropometric survey, 2014; a little more
                                                # for an open hand's spread)


def segment_coordinates(points: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """points [P, D], segments a, b [S, D] -> (distance [P, S] to the segment, t [P, S] in [0, 1]: where along
    it the nearest point lies)."""
    v = b - a
    t = ((points[:, None] - a[None]) * v[None]).sum(-1) / (v * v).sum(-1).clamp_min(1e-12)[None]
    t = t.clamp(0.0, 1.0)
    nearest = a[None] + t[..., None] * v[None]
    return (points[:, None] - nearest).norm(dim=-1), t


def _inside(points: Tensor, polygon: Tensor) -> Tensor:
    """points [P, 2] inside polygon [V, 2] (even-odd rule) -> [P] bool."""
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0 = polygon[:, 0][None], polygon[:, 1][None]
    x1, y1 = polygon.roll(-1, 0)[:, 0][None], polygon.roll(-1, 0)[:, 1][None]
    crosses = ((y0 > y) != (y1 > y)) & (x < x0 + (y - y0) * (x1 - x0) / torch.where(y1 == y0, 1e-12, y1 - y0))
    return crosses.sum(1) % 2 == 1


def body_scale(pose: Tensor) -> float:
    """A length for the body in the pose's units: the shoulder width, or a third of the shoulder-hip length when
    that is longer (a person seen from the side has narrow shoulders)."""
    p = pose[:, :2].float()
    shoulders = float((p[11] - p[12]).norm())
    trunk = float(((p[11] + p[12]) / 2 - (p[23] + p[24]) / 2).norm())
    return max(shoulders, trunk / 3, 1e-6)


def torso_distance(points: Tensor, pose: Tensor) -> Tensor:
    """points [P, 2] (pixels) -> [P] distance to the torso quadrilateral (TORSO_JOINTS of pose [33, >=2]), 0
    inside it."""
    p, points = pose[:, :2].float(), points.float()
    quad = torch.stack([p[j] for j in TORSO_JOINTS])
    d_edge, _ = segment_coordinates(points, quad, quad.roll(-1, 0))
    return torch.where(_inside(points, quad), 0.0, d_edge.min(1).values)


def body_parts(points: Tensor, pose: Tensor, limb_radius: float = 0.15, arm_reach: float | None = None) -> Tensor:
    """points [P, 2] (pixels of the photo the pose [33, >=2] was found in) -> part [P] int64: the bone id
    (index into BONES) of the nearest bone segment, or TORSO. Inside the torso quadrilateral a point is torso
    unless a bone passes within limb_radius x body_scale of it (an arm held across the chest). With arm_reach,
    a point nearest an arm but further than arm_reach x body_scale from its bone is torso too (limb_skinning:
    long hair hanging beside an arm); a forearm's bone counts as reaching HAND_LENGTH of itself past the wrist,
    where the hand is."""
    p = pose[:, :2].float()
    points = points.float()
    a = torch.stack([p[j] for _, j, _ in BONES])
    b = torch.stack([p[j] for _, _, j in BONES])
    d_bone, _ = segment_coordinates(points, a, b)                                    # [P, B]
    d_torso = torso_distance(points, pose)
    inside = d_torso == 0
    nearest, which = d_bone.min(1)
    scale = body_scale(pose)
    # outside the torso the nearest of bone and torso; inside it (d_torso 0) a bone within limb_radius wins
    part = torch.where((nearest < d_torso) | (inside & (nearest < limb_radius * scale)), which, TORSO)
    if arm_reach is not None:
        # measured to each forearm carried on past the wrist by a hand's length: a hand (a fist the hand detector
        # missed) lies beyond the wrist, not beside the arm, and goes with it
        reach_b = b.clone()
        reach_b[FOREARMS] = b[FOREARMS] + HAND_LENGTH * (b[FOREARMS] - a[FOREARMS])
        d_reach, _ = segment_coordinates(points, a, reach_b)
        beyond = d_reach.gather(1, which[:, None])[:, 0] > arm_reach * scale
        part = torch.where(torch.isin(which, torch.tensor(sorted(ARMS))) & beyond, TORSO, part)
    return part


# ------------------------------------------------------------------------------------------------ skinning
def bone_ends(names: list[str]) -> Tensor:
    """[B, 2] particle index of each bone's joints a, b (-1 where the avatar has no such particle)."""
    where = {n: i for i, n in enumerate(names)}
    return torch.tensor([[where.get(f"pose:{a}", -1), where.get(f"pose:{b}", -1)] for _, a, b in BONES])


def _usable(ends: Tensor) -> list[int]:
    """For each bone: itself when both its particles exist, else the nearest ancestor that has both, else -1."""
    out = []
    for bone in range(len(BONES)):
        while bone >= 0 and not bool((ends[bone] >= 0).all()):
            bone = PARENT[bone]
        out.append(bone)
    return out


def limb_skinning(pixels: Tensor, means: Tensor, regions: Tensor, pose: Tensor | None, particles: Tensor,
                  names: list[str], skin_index: Tensor, skin_weight: Tensor, torso_only: Tensor | None = None
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """Re-bind the body and hand Gaussians as the module docstring says.

    pixels [N, 2] each Gaussian's place in the photo (pixels), means [N, 3], regions [N] (engine.avatar.regions
    ids: only BODY and HANDS are re-bound; head, hair and face keep their rows), pose
    [33, >=2] in the photo's pixels (None: nothing changes), particles [K, 3] with names, skin_index/skin_weight
    [N, J] from engine.avatar.skinning; torso_only [N] bool: body Gaussians that ride the torso wherever they
    lie (engine.avatar.behind_arms: the torso behind an arm). -> (skin_index, skin_weight, bones [N] int64: the
    bone whose rotation each Gaussian takes, -1 for none)."""
    N, J = skin_index.shape
    bones = torch.full((N,), -1, dtype=torch.long)
    if pose is None or N == 0:
        return skin_index, skin_weight, bones
    index, weight = skin_index.clone(), skin_weight.clone()
    ends, where = bone_ends(names), {n: i for i, n in enumerate(names)}
    usable = _usable(ends)
    # an arm is at most ARM_REACH body sizes thick about its bone: beyond that, beside the body, lies what hangs
    # from the head or torso over it (long hair), which stays when the arm turns
    part = body_parts(pixels, pose, arm_reach=ARM_REACH)
    is_body = regions == BODY
    if torso_only is not None:
        part = torch.where(torso_only & is_body, TORSO, part)
    # hands: their own hand's points when the photo shows them, else the forearm (rigid beyond the wrist)
    is_hand = regions == HANDS
    if bool(is_hand.any()):
        wrists = pose[[15, 16], :2].float()
        right = (pixels[:, None] - wrists[None]).norm(dim=-1).argmin(1) == 1
        for side, forearm in (("left", 3), ("right", 1)):
            rows = is_hand & (right == (side == "right"))
            pool = [where[n] for n in names if n.startswith(f"hand_{side}:")]
            if pool:
                pool += [where[f"pose:{j}"] for j in HAND_POINTS[side] if f"pose:{j}" in where]
                pool_t = torch.tensor(pool)
                i, w = skin_weights(means[rows], particles[pool_t], min(J, len(pool)))
                index[rows], weight[rows] = _pad(pool_t[i], w, J)
            else:
                part = torch.where(rows, forearm, part)
                is_body = is_body | rows
    # bones
    for bone in range(len(BONES)):
        rows = is_body & (part == bone)
        use = usable[bone]
        if use < 0 or not bool(rows.any()):
            continue
        a, b = int(ends[use, 0]), int(ends[use, 1])
        _, t = segment_coordinates(means[rows], particles[a][None], particles[b][None])
        t = t[:, 0]
        i = torch.tensor([a, b]).expand(int(rows.sum()), 2)
        index[rows], weight[rows] = _pad(i, torch.stack([1 - t, t], 1), J)
        bones[rows] = use
    # the torso (and limbs without a usable bone): the torso particles only, smoothly over its width
    torso = [where[f"pose:{j}"] for j in TORSO_JOINTS if f"pose:{j}" in where]
    rows = is_body & (bones < 0)
    if torso and bool(rows.any()):
        pool_t = torch.tensor(torso)
        sigma = 0.5 * float((particles[where["pose:11"]] - particles[where["pose:12"]]).norm()) \
            if {"pose:11", "pose:12"} <= where.keys() else None
        i, w = skin_weights(means[rows], particles[pool_t], min(J, len(torso)), sigma=sigma or None)
        index[rows], weight[rows] = _pad(pool_t[i], w, J)
    return index, weight, bones


def _pad(index: Tensor, weight: Tensor, J: int) -> tuple[Tensor, Tensor]:
    """[M, j] -> [M, J]: extra columns repeat the first index at weight 0."""
    j = index.shape[1]
    if j >= J:
        return index[:, :J], weight[:, :J] / weight[:, :J].sum(1, keepdim=True)
    return (torch.cat([index, index[:, :1].expand(-1, J - j)], 1),
            torch.cat([weight, weight.new_zeros(weight.shape[0], J - j)], 1))


# ------------------------------------------------------------------------------------------------ rotation
def rotvec_between(u: Tensor, v: Tensor) -> Tensor:
    """Shortest-arc rotation vectors [..., 3] taking directions u to v [..., 3] (0 where either is 0)."""
    axis = torch.cross(u, v, dim=-1)
    s, c = axis.norm(dim=-1, keepdim=True), (u * v).sum(-1, keepdim=True)
    angle = torch.atan2(s, c)
    return torch.where(s > 1e-12, axis / s.clamp_min(1e-12) * angle, torch.zeros_like(axis))


def facing_rotation(u: Tensor, v: Tensor) -> Tensor:
    """Unit quaternions [..., 4] wxyz taking directions u to v [..., 3]: first about the view axis z by the
    angle between their projections on the image plane (none where either projection vanishes), then by the
    shortest arc left, so a limb turned in the image plane does not roll."""
    az_u, az_v = torch.atan2(u[..., 1], u[..., 0]), torch.atan2(v[..., 1], v[..., 0])
    planar = (u[..., :2].norm(dim=-1) > 1e-9 * u.norm(dim=-1)) & (v[..., :2].norm(dim=-1) > 1e-9 * v.norm(dim=-1))
    phi = torch.where(planar, torch.remainder(az_v - az_u + math.pi, 2 * math.pi) - math.pi, torch.zeros_like(az_u))
    zero = torch.zeros_like(phi)
    qz = torch.stack([(phi / 2).cos(), zero, zero, (phi / 2).sin()], -1)
    turned = (rotvec_matrix(torch.stack([zero, zero, phi], -1)) @ u[..., None])[..., 0]
    return quat_mul(rotvec_quat(rotvec_between(turned, v)), qz)


def quat_nlerp(p: Tensor, q: Tensor, s: Tensor) -> Tensor:
    """Normalised blend of unit quaternions [..., 4] (q taken on p's side), s [..., 1] in [0, 1]."""
    q = torch.where((p * q).sum(-1, keepdim=True) < 0, -q, q)
    return torch.nn.functional.normalize((1 - s) * p + s * q, dim=-1)


def rotvec_matrix(r: Tensor) -> Tensor:
    """Rotation vectors [..., 3] -> matrices [..., 3, 3] (Rodrigues)."""
    theta = r.norm(dim=-1, keepdim=True)[..., None]                                   # [..., 1, 1]
    k = r / theta[..., 0].clamp_min(1e-12)
    zero = torch.zeros_like(k[..., 0])
    K = torch.stack([zero, -k[..., 2], k[..., 1], k[..., 2], zero, -k[..., 0], -k[..., 1], k[..., 0], zero],
                    -1).reshape(*k.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=r.dtype, device=r.device).expand_as(K)
    return eye + theta.sin() * K + (1 - theta.cos()) * (K @ K)


def rotvec_quat(r: Tensor) -> Tensor:
    """Rotation vectors [..., 3] -> unit quaternions [..., 4] wxyz."""
    theta = r.norm(dim=-1, keepdim=True)
    return torch.cat([(theta / 2).cos(), r * torch.where(theta > 1e-12, (theta / 2).sin() / theta.clamp_min(1e-12),
                                                         0.5)], -1)


def quat_mul(p: Tensor, q: Tensor) -> Tensor:
    """Hamilton product p ⊗ q of wxyz quaternions [..., 4]."""
    pw, px, py, pz = p.unbind(-1)
    qw, qx, qy, qz = q.unbind(-1)
    return torch.stack([pw * qw - px * qx - py * qy - pz * qz, pw * qx + px * qw + py * qz - pz * qy,
                        pw * qy - px * qz + py * qw + pz * qx, pw * qz + px * qy - py * qx + pz * qw], -1)


class LimbRig:
    """The bone rotations of one set of Gaussians (a view's, engine/view.py): built once from the rest pose,
    applied to every frame after the decoder's skinning."""

    def __init__(self, particles: Tensor, names: list[str], means: Tensor, bones: Tensor):
        """particles [K, 3] and names of the avatar, means [N, 3] and bones [N] of the Gaussians (rest pose)."""
        self.ends = bone_ends(names)
        self.rows = (bones >= 0).nonzero().squeeze(1)                                # [M]
        self.bone = bones[self.rows]
        a, b = particles[self.ends[self.bone, 0]], particles[self.ends[self.bone, 1]]
        v = b - a
        p = means[self.rows]
        t = (((p - a) * v).sum(-1) / (v * v).sum(-1).clamp_min(1e-12)).clamp(0, 1)
        self.offset = p - (a + t[:, None] * v)                                       # [M, 3] off the bone
        usable = set(_usable(self.ends))
        children = {PARENT[c]: c for c in range(len(BONES)) if c in usable and PARENT[c] >= 0}
        parent = torch.tensor([PARENT[i] if PARENT[i] >= 0 else TORSO for i in range(len(BONES))])
        child = torch.tensor([children.get(i, TORSO) for i in range(len(BONES))])
        has_child = torch.tensor([i in children for i in range(len(BONES))])
        near_a = t < BLEND
        near_b = (t > 1 - BLEND) & has_child[self.bone]
        self.other = torch.where(near_a, parent[self.bone], torch.where(near_b, child[self.bone], self.bone))
        self.share = torch.where(near_a, 0.5 * (1 - t / BLEND),
                                 torch.where(near_b, 0.5 * (1 - (1 - t) / BLEND), torch.zeros_like(t)))[:, None]
        self.particles = particles
        # per frame only the motion changes: the bones' ends and rest directions are fixed here
        self._ends = self.ends.clamp_min(0)
        self._rest = particles[self._ends[:, 1]] - particles[self._ends[:, 0]]                 # [B, 3]
        self._whole = (self.ends >= 0).all(1, keepdim=True)                                   # [B, 1]

    def __bool__(self) -> bool:
        return len(self.rows) > 0

    def rotations(self, motion: Tensor) -> Tensor:
        """Particle motion [K, 3] (world) -> each bone's rotation, a unit quaternion [B + 1, 4] wxyz
        (`facing_rotation`; the last row: the torso, which does not turn)."""
        rest = self._rest.to(motion.dtype)
        moved = rest + motion[self._ends[:, 1]] - motion[self._ends[:, 0]]
        q = facing_rotation(rest, moved)
        identity = torch.zeros_like(q)
        identity[:, 0] = 1
        q = torch.where(self._whole, q, identity)
        return torch.cat([q, identity[:1]])

    def apply(self, g: Gaussians, motion: Tensor) -> Gaussians:
        """Deformed Gaussians g [N] (skinned by `motion` [K, 3]) -> the same with each bone Gaussian's offset from
        its bone, and its orientation, turned by its bone's rotation. The offset is turned by the quaternion
        itself (v + w t + u x t, t = 2 u x v), not through a rotation matrix: the same rotation in a few
        whole-array ops, which the live engine runs every frame."""
        if not self:
            return g
        q_bone = self.rotations(motion)
        q = quat_nlerp(q_bone.index_select(0, self.bone), q_bone.index_select(0, self.other),
                       self.share.to(q_bone.dtype))                                           # [M, 4]
        offset = self.offset.to(g.means.dtype)
        w, u = q[:, :1], q[:, 1:]
        t = 2 * torch.linalg.cross(u, offset)
        means = g.means.index_add(0, self.rows, w * t + torch.linalg.cross(u, t))
        quats = g.quats.index_copy(0, self.rows, quat_mul(q, g.quats.index_select(0, self.rows)))
        return Gaussians(means, quats, g.scales, g.opacities, g.sh)
