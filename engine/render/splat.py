"""The splat call: Gaussians (activated, see `Gaussians`) + one camera -> an image, with the back of thin
shells culled first. Every renderer in the project ends here (engine/view.py for the live engine and the
distillation, engine/render/turntable.py for stills and orbits)."""
from __future__ import annotations

import torch
from torch import Tensor

import cuda_ext
from engine.render.away import AwayColour, seen_from
from engine.render.camera import camera_centre
from engine.render.gaussians import Gaussians


FACING_COS_MIN = -0.2      # the facing test's threshold (viewer/static/splat_sort.js holds the same number)


def facing(normals: Tensor, means: Tensor, viewmat: Tensor, cos_min: float = FACING_COS_MIN) -> Tensor:
    """Which Gaussians [N] bool face the camera of viewmat [4, 4]: the cosine between the outward normal
    [N, 3] and the direction to the camera is above cos_min. A zero normal (unknown) always counts as facing.
    The shells of an avatar are thin surfaces: the back of a body seen from the front is hidden by its front,
    so culling it changes nothing visible and saves its projection, binning and compositing."""
    to_eye = camera_centre(viewmat) - means
    return (normals * to_eye).sum(-1) >= cos_min * to_eye.norm(dim=-1) * normals.norm(dim=-1)


def splat(g: Gaussians, viewmat: Tensor, K: Tensor, width: int, height: int,
          background: float = 1.0) -> tuple[Tensor, Tensor]:
    """One image [H, W, 3] (unclamped) over a grey `background`, and alpha [H, W, 1], from viewmat [4, 4] and
    K [3, 3]. Differentiable in the Gaussians (cuda_ext.rasterization)."""
    img, alpha, _ = cuda_ext.rasterization(g.means, g.quats, g.scales, g.opacities, g.sh, viewmat[None], K[None],
                                           width, height, sh_degree=g.sh_degree,
                                           backgrounds=torch.full((1, 3), float(background)))
    return img[0], alpha[0]


def render_gaussians(g: Gaussians, viewmat: Tensor, K: Tensor, width: int, height: int,
                     background: float = 1.0, normals: Tensor | None = None,
                     away: AwayColour | None = None) -> tuple[Tensor, Tensor]:
    """`splat` without gradients; with normals [N, 3], the Gaussians facing away from the camera are culled
    first (`facing`); with an away colour (an avatar's, engine.render.away), they look as this camera sees them."""
    if away is not None:
        g = seen_from(g, away, viewmat)
    if normals is not None:
        g = g.select(facing(normals, g.means, viewmat))
    with torch.no_grad():
        return splat(g, viewmat, K, width, height, background)
