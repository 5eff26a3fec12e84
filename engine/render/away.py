"""What a Gaussian looks like away from the photo camera: a second colour, faded in as a camera turns away from the
photo's own line of sight.

A photo's edge pixels mix the person with the backdrop (engine.avatar.matte). From the photo camera the avatar
must show that mix, or the front view would lose the photo's soft edge; from anywhere else the same surfels are
seen across the side of the head, where the backdrop's share drew the old silhouette as a pale line. So an avatar
keeps, per Gaussian, the colour (SH DC) it shows from away, and every renderer picks per camera: within NEAR_DEG of
the ray the photo camera saw a Gaussian along, the photo's colour; past AWAY_DEG the away colour; a linear blend of
the cosines between. Gaussians with nothing else to show carry their own colour. Only the colour changes: the
opacity stays, since the edge's surfels also close the seam where the front shell meets the back (fading the
backdrop's share out of them opened it: on a small full-body figure, 0.8 -> 1.2% see-through).

It is computed once per camera (engine.view.AvatarView, engine.render.splat.render_gaussians), so a frame costs
nothing more; the browser's renderer does the same in its vertex shader (viewer/static/splat_gl.js).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from engine.render.camera import camera_centre
from engine.render.gaussians import Gaussians

# Up to NEAR_DEG round from the photo camera's ray the photo's colour, from AWAY_DEG the away colour: a narrow band,
# so a camera swaying round the photo's (the demo's +-15 degrees) shows the clean edge for most of its swing.
NEAR_DEG = 2.0
AWAY_DEG = 8.0


@dataclass
class AwayColour:
    """dc [N, 3]: the SH DC colour each Gaussian shows away from the photo camera; eye [3]: the photo camera's
    centre (world); base [N, 3] (optional): the Gaussians' own DC colour, so that `rows` can skip the ones that
    show it from everywhere (a new camera then costs the edge, not the whole avatar)."""
    dc: Tensor
    eye: Tensor
    base: Tensor | None = None

    def rows(self) -> Tensor:
        """[M] indices of the Gaussians whose colour away differs from their own (all of them without base)."""
        if self.base is None:
            return torch.arange(len(self.dc))
        return (self.dc != self.base).any(-1).nonzero().squeeze(1)


def photo_weight(means: Tensor, eye: Tensor, photo_eye: Tensor) -> Tensor:
    """[N] in [0, 1]: 1 where a camera at eye [3] sees means [N, 3] along (nearly) the ray the photo camera at
    photo_eye [3] saw it along, 0 where it sees them from AWAY_DEG round or more."""
    to_eye = torch.nn.functional.normalize(eye - means, dim=-1)
    to_photo = torch.nn.functional.normalize(photo_eye - means, dim=-1)
    cos = (to_eye * to_photo).sum(-1)
    near, away = math.cos(math.radians(NEAR_DEG)), math.cos(math.radians(AWAY_DEG))
    return ((cos - away) / (near - away)).clamp(0.0, 1.0)


def seen_from(g: Gaussians, away: AwayColour, viewmat: Tensor) -> Gaussians:
    """The Gaussians [N] as the camera of viewmat [4, 4] sees them: DC colour blended between the photo's (g) and
    the away colour by photo_weight. Higher SH bands, and everything else, are kept."""
    if away.dc.shape != (len(g), 3):
        raise ValueError(f"away colour: expected dc [{len(g)}, 3], got {list(away.dc.shape)}")
    rows = away.rows()                                                        # [M]
    w = photo_weight(g.means[rows], camera_centre(viewmat), away.eye)[:, None]   # [M, 1]
    sh = g.sh.clone()
    dc = away.dc[rows]
    sh[rows, 0] = dc + w * (g.sh[rows, 0] - dc)
    return Gaussians(g.means, g.quats, g.scales, g.opacities, sh)
