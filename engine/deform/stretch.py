"""Splats grow where the motion stretches the face, so that stretched skin stays closed.

The avatar's face Gaussians lie 1 px apart and keep their size when they move. Where neighbouring Gaussians
follow different particles by different amounts (the cheek beside an opening mouth's corner, which follows the
jaw part of the way; a lid as a blink pulls it down), they part, and the skin shows as a row of beads over
whatever lies behind it. Here each face particle's stretch is read from how the motion moves its neighbours:
the deformation gradient F [2, 2] of the image plane (least squares over its K_NEIGHBOURS nearest face
particles at rest, F = (sum d' d^T)(sum d d^T)^-1 for rest offsets d and moved offsets d'), and its larger
singular value, at least 1 (a squeezed patch keeps its splats) and at most MAX_GROWTH. Every Gaussian grows by
its particles' stretch, blended by its skinning weights (in the log). A rigid turn of the head has both
singular values 1 and grows nothing.

A lip's or an eyelid's particles take their neighbours from that lip or lid alone: they move as one piece, and
their parting from the other lip or lid is the mouth or the eye opening, not skin being stretched (the teeth, skinned
to the lips, then keep their size too). The skin round them (the mouth's corners, the cheeks, the lid's fold) takes
any face particle, so it grows where the opening pulls it.

Data path: particle motion [K, 3] (world) -> `FaceStretch.log_growth` [K] -> `FaceStretch.apply` scales the
deformed Gaussians [N] (engine.view.AvatarView.splat, after the decoder's skinning).
"""
from __future__ import annotations

import torch
from torch import Tensor

from engine.avatar.eyelids import EYES_ARCS
from engine.avatar.mouth import LOWER_LIP, UPPER_LIP
from engine.avatar.particles import face_rows
from engine.render.gaussians import Gaussians

K_NEIGHBOURS = 6      # face particles per least-squares fit (the lips' and eyes' every vertex, elsewhere every 6th
                      # face-mesh vertex: engine.avatar.particles)
SLACK = 1.5           # splats 1 px apart with a sigma of 0.75 px still cover the gaps up to this stretch: a splat
                      # grows by stretch / SLACK, once the stretch is past it
MAX_GROWTH = 2.0      # and at most this much (a wide-open mouth's corner stretches the cheek ~2-3x)
MIN_LOG = 0.01        # below this growth (1%) nothing is scaled


def _sides(names: list[str]) -> dict[str, int]:
    """slot name -> an opening's side: +-1 for the upper / lower lip, +-2 and +-3 for each eye's upper / lower lid."""
    side = {f"face:{i}": 1 for i in UPPER_LIP} | {f"face:{i}": -1 for i in LOWER_LIP}
    for eye, (upper, lower, _) in enumerate(EYES_ARCS):
        side |= {f"face:{i}": 2 + eye for i in upper[1:-1]} | {f"face:{i}": -(2 + eye) for i in lower[1:-1]}
    return {n: side[n] for n in names if n in side}


class FaceStretch:
    """The face particles' neighbourhoods at rest, and the growth a motion gives each Gaussian."""

    def __init__(self, particles: Tensor, names: list[str], skin_index: Tensor, skin_weight: Tensor):
        """particles [K, 3] at rest (world), their slot names [K], the Gaussians' skinning [N, J] (indices, weights)."""
        if particles.dim() != 2 or particles.shape[1] != 3 or len(names) != particles.shape[0]:
            raise ValueError(f"particles: expected [K, 3] with K names, got {list(particles.shape)} and {len(names)}")
        face = face_rows(names)
        rows = face.nonzero().squeeze(1)                                       # [F] the face particles
        self.rows = rows
        self.touched = face.to(skin_index.device)[skin_index].any(1).nonzero().squeeze(1)   # [M] Gaussians it grows
        self.skin_index, self.skin_weight = skin_index[self.touched], skin_weight[self.touched]
        if len(rows) <= K_NEIGHBOURS:                                          # no face: nothing ever grows
            self.nbr = None
            return
        p = particles[rows, :2].detach().cpu().double()
        dist = torch.cdist(p, p)                                               # [F, F]
        sides = _sides(names)
        side = torch.tensor([sides.get(names[int(r)], 0) for r in rows])
        own = (side[:, None] == side[None, :]) | (side[:, None] == 0)          # a lip or a lid: its own only
        dist[~own] = float("inf")
        dist.fill_diagonal_(float("inf"))
        near = dist.topk(K_NEIGHBOURS, dim=1, largest=False).indices           # [F, k] into rows
        self.nbr = rows[near]                                                  # [F, k] into the K particles
        self.d = (p[near] - p[:, None, :]).float()                             # [F, k, 2] rest offsets
        a = torch.einsum("fki,fkj->fij", self.d, self.d)                       # [F, 2, 2]
        scale = a.diagonal(dim1=1, dim2=2).sum(-1)[:, None, None].clamp(min=1e-12)
        self.a_inv = torch.linalg.inv(a + 1e-6 * scale * torch.eye(2))         # (a line of neighbours: regularised)

    def log_growth(self, motion: Tensor) -> Tensor:
        """motion [K, 3] (world) -> [K] log of each particle's growth (0 off the face)."""
        out = motion.new_zeros(motion.shape[0])
        if self.nbr is None:
            return out
        if self.d.device != motion.device:                                     # built on the CPU, used where
            self.rows, self.nbr, self.d, self.a_inv = (t.to(motion.device)      # the motion is (a GPU in training)
                                                       for t in (self.rows, self.nbr, self.d, self.a_inv))
        m = motion[:, :2].float()
        moved = self.d + m[self.nbr] - m[self.rows][:, None, :]                # [F, k, 2]
        F = torch.einsum("fki,fkj->fij", moved, self.d) @ self.a_inv           # [F, 2, 2]
        frob = (F * F).sum((1, 2))
        det = F[:, 0, 0] * F[:, 1, 1] - F[:, 0, 1] * F[:, 1, 0]
        big = ((frob + (frob * frob - 4 * det * det).clamp(min=1e-12).sqrt()) / 2).sqrt()   # larger singular value
        out[self.rows] = (big / SLACK).clamp(1.0, MAX_GROWTH).log().to(out.dtype)
        return out

    def apply(self, g: Gaussians, motion: Tensor) -> Gaussians:
        """Deformed Gaussians g [N] (skinned as given at construction) -> the same with their scales grown by
        the stretch motion [K, 3] gives them; g itself when nothing grows by MIN_LOG."""
        grow = self.log_growth(motion)
        if not bool((grow > MIN_LOG).any()):
            return g
        per = (grow[self.skin_index] * self.skin_weight).sum(1)               # [M]
        scales = g.scales.index_put((self.touched,), g.scales[self.touched] * per.exp()[:, None])
        return Gaussians(g.means, g.quats, scales, g.opacities, g.sh)
