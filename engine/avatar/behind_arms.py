"""What an arm hides: a layer of torso behind each arm that lies over the body, shown when the arm moves away.

A photo shows an arm hanging at the side or a hand on the belly, not the torso behind them. The shells follow
the photo, so when "raise right hand" lifts the arm (engine.avatar.limbs), the pixels it covered open onto the
background. `behind_arms` puts a layer there: on every `step`-th pixel of an arm or hand (engine.avatar.limbs
body_parts) within REACH body sizes of the torso quadrilateral and more than step + 1 pixels inside the
silhouette (so that no disc shows around the arm's outer edge), a flat disc facing the photo camera, BEHIND of
the way from the front shell to the back one (behind the arm, inside the body), coloured as the torso continues
there (engine.avatar.backside.surface_colours from the photo's uncovered torso pixels: the median colour near
those rows and the torso's own fine texture). personalize binds the layer to the torso particles, so it stays
when the arm moves. Pixels are (x, y) of the photo.
"""
from __future__ import annotations

import torch
from torch import Tensor

from engine.avatar.backside import surface_colours
from engine.avatar.depth import surface_z
from engine.avatar.limbs import ARMS, TORSO, body_parts, body_scale, torso_distance
from engine.avatar.regions import BODY, HANDS
from engine.avatar.shell import erode
from engine.render.camera import unproject
from engine.render.gaussians import Gaussians, rgb_to_sh_dc

REACH = 0.4           # x body_scale: an arm this close to the torso's quadrilateral lies over the body
BEHIND = 0.35         # of the way from the front shell to the back one: an arm's thickness behind its front
STEP = 4              # pixels between discs: a hidden, plain surface, and every Gaussian costs each frame (an
                      # astronaut's arm over her suit took 7k at 2 px, and the live engine's RTF fell below 2)


def behind_arms(image: Tensor, person: Tensor, regions: Tensor, pose: Tensor | None, depth: tuple[Tensor, Tensor],
                K: Tensor, z0: float, step: int = STEP) -> tuple[Gaussians, Tensor]:
    """image [H, W, 3], person [H, W] bool, regions [H, W], pose [33, >=2] (pixels; None: no layer), depth =
    (front, back) [H, W] (pixels in front of / behind z0, engine.avatar.depth), K [3, 3]. -> (Gaussians [M],
    pixel [M, 2] (x, y) long); M = 0 when no arm lies over the body."""
    H, W = person.shape
    none = (Gaussians(torch.zeros(0, 3), torch.zeros(0, 4), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, 1, 3)),
            torch.zeros(0, 2, dtype=torch.long))
    if pose is None:
        return none
    # discs whose footprint stays inside the silhouette: at an arm's outer edge they would show around it
    body = erode(person, step + 1) & torch.isin(regions, torch.tensor([BODY, HANDS]))
    ys, xs = torch.nonzero(body, as_tuple=True)
    if ys.numel() == 0:
        return none
    centres = torch.stack([xs, ys], 1).float() + 0.5
    part = body_parts(centres, pose)
    arm = torch.isin(part, torch.tensor(sorted(ARMS))) | (regions[ys, xs] == HANDS)
    over = arm & (torso_distance(centres, pose) <= REACH * body_scale(pose)) & ((xs % step == 0) & (ys % step == 0))
    torso = torch.zeros(H, W, dtype=torch.bool)
    torso[ys[part == TORSO], xs[part == TORSO]] = True
    torso &= regions == BODY
    xs, ys = xs[over], ys[over]
    if xs.numel() == 0:
        return none
    z_front, z_back = surface_z(depth[0][ys, xs], -1.0, K, z0), surface_z(depth[1][ys, xs], 1.0, K, z0)
    z = z_front + BEHIND * (z_back - z_front)
    means = unproject(xs.float() + 0.5, ys.float() + 0.5, z, K)
    sigma = 0.8 * step * z / float(K[0, 0])                                     # discs `step` px apart overlap: no gaps
    n = len(xs)
    pixel = torch.stack([xs, ys], 1)
    rgb = surface_colours(image, torso, pixel)
    g = Gaussians(means.float(), torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
                  torch.stack([sigma, sigma, 0.3 * sigma], -1).float(), torch.ones(n),
                  rgb_to_sh_dc(rgb)[:, None, :].float().contiguous())
    return g, pixel
