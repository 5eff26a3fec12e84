"""Skinning: binding Gaussians to control particles and carrying particle motion to them.

`skin_weights` binds every Gaussian (points [N, 3]) to its k nearest control particles (particles [K, 3]) with
normalised Gaussian-RBF weights; personalize uses `local=True`, each point's width from its own neighbours and
weights that fade to zero at the (k+1)-th nearest, so the weights have no seams. engine/avatar/personalize
stores the result (index [N, k], weight [N, k]) with the Avatar. Region labels keep a Gaussian from binding
across parts (a lip Gaussian to a chin particle, a finger to the other hand). `blend_translations` is the
linear blend the Gaussian decoder (engine/deform/decoder) applies to particle displacements x_t [T, K, 3] to get
per-Gaussian displacements [T, N, 3].
"""
from __future__ import annotations

import torch
from torch import Tensor

from engine.avatar.knn import check_points, knn


def default_sigma(particles: Tensor) -> float:
    """RBF width from particle spacing: the median distance from a particle to its nearest other particle.

    Scale-free (it follows the units and density of the particles) and robust to a few outliers. Coincident
    particles (distance 0) are left out of the median; with fewer than two distinct particles it returns 1.0,
    where the width does not change any weight.
    """
    if particles.shape[0] < 2:
        return 1.0
    d2, _ = knn(particles, particles, 1, exclude_self=True)
    d = d2[:, 0].sqrt()
    d = d[d > 0]
    return float(d.median()) if d.numel() else 1.0


def _check_regions(name: str, regions: Tensor, n: int) -> None:
    if not isinstance(regions, Tensor) or regions.shape != (n,):
        shape = list(regions.shape) if isinstance(regions, Tensor) else type(regions).__name__
        raise ValueError(f"{name}: expected an integer tensor of shape [{n}], got {shape}")
    if regions.is_floating_point() or regions.is_complex() or regions.dtype == torch.bool:
        raise ValueError(f"{name}: expected integer region labels, got {regions.dtype}")


def skin_weights(points: Tensor, particles: Tensor, k: int = 4, sigma: float | None = None,
                 point_regions: Tensor | None = None, particle_regions: Tensor | None = None,
                 allowed: dict[int, set[int]] | None = None, local: bool = False) -> tuple[Tensor, Tensor]:
    """Bind each point to its k nearest (allowed) particles with weights w = exp(-d^2 / (2 sigma^2)), normalised.

    points: [N, 3]; particles: [K, 3] (same dtype and device); k >= 1.
    sigma: RBF width in the units of the points; None -> `default_sigma(particles)`.
    point_regions: [N] int, particle_regions: [K] int (both or neither): a point of region r binds only to
        particles whose region is in allowed[r]; allowed=None, or r missing from it, means {r}.
    Returns (index [N, k] int64 into particles, weight [N, k] in the points' dtype, each row summing to 1).
    Weights come from d^2 - d^2_nearest, so the nearest particle always gets exp(0) before normalising and
    far-away points never give 0/0. Where fewer than k particles are allowed, a row lists them all and is
    padded with its nearest particle at weight 0.
    local: sigma per point, half its distance to its k-th nearest allowed particle, and every weight less the
        one the (k+1)-th nearest would get (floored at 0). Weights then change continuously as a point moves,
        also where its set of k nearest changes, and where particles are sparse (outside the lips and eyes) a
        point blends its neighbours instead of taking the nearest one's motion whole: no seams that tear open
        where neighbouring particles move differently (a dropping jaw beside a still cheek). sigma is unused.
    """
    check_points("points", points)
    check_points("particles", particles)
    if (particles.dtype, particles.device) != (points.dtype, points.device):
        raise ValueError(f"particles: {particles.dtype} on {particles.device} differs from points: "
                         f"{points.dtype} on {points.device}")
    if particles.shape[0] == 0:
        raise ValueError("particles: is empty (needs at least one control particle)")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k: must be a positive int, got {k!r}")
    if sigma is None:
        sigma = default_sigma(particles)
    if not (isinstance(sigma, (int, float)) and 0 < sigma < float("inf")):
        raise ValueError(f"sigma: must be a finite positive number, got {sigma!r}")
    scale = 0.5 / (float(sigma) * float(sigma))                # may be inf for a tiny sigma: handled below
    if (point_regions is None) != (particle_regions is None):
        raise ValueError("point_regions, particle_regions: give both or neither")
    if allowed is not None and point_regions is None:
        raise ValueError("allowed: needs point_regions and particle_regions")

    N, K = points.shape[0], particles.shape[0]
    if point_regions is None:                                  # one region holding everything
        point_regions = torch.zeros(N, dtype=torch.int64, device=points.device)
        particle_regions = torch.zeros(K, dtype=torch.int64, device=points.device)
    _check_regions("point_regions", point_regions, N)
    _check_regions("particle_regions", particle_regions, K)

    index = torch.zeros(N, k, dtype=torch.int64, device=points.device)
    weight = torch.zeros(N, k, dtype=points.dtype, device=points.device)
    for r in torch.unique(point_regions).tolist():
        ok = sorted(allowed.get(r, {r})) if allowed is not None else [r]
        pool = torch.isin(particle_regions, torch.tensor(ok, dtype=particle_regions.dtype,
                                                         device=particle_regions.device)).nonzero().squeeze(1)
        if pool.numel() == 0:
            raise ValueError(f"point_regions: region {r} has no allowed particle (allowed regions {ok})")
        rows = (point_regions == r).nonzero().squeeze(1)
        kk = min(k, pool.numel())
        if local:
            w, j = _local_weights(points[rows], particles[pool], kk)
        else:
            d2, j = knn(points[rows], particles[pool], kk)
            diff = d2 - d2[:, :1]                              # >= 0, exactly 0 for the nearest
            w = torch.where(diff > 0, torch.exp(-diff * scale), torch.ones_like(diff))
            w = w / w.sum(dim=1, keepdim=True)
        idx = pool[j]
        if kk < k:                                             # pad: nearest particle, weight 0
            idx = torch.cat([idx, idx[:, :1].expand(-1, k - kk)], dim=1)
            w = torch.cat([w, w.new_zeros(w.shape[0], k - kk)], dim=1)
        index[rows], weight[rows] = idx, w
    return index, weight


def _local_weights(points: Tensor, particles: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """skin_weights(local=True) for one pool: points [N, 3], particles [P, 3], k <= P -> (weight [N, k],
    index [N, k] into particles)."""
    extra = 1 if particles.shape[0] > k else 0
    d2, j = knn(points, particles, k + extra)
    sigma2 = (0.25 * d2[:, k - 1:k]).clamp(min=1e-12)          # (d_k / 2)^2
    rbf = torch.exp(-(d2 - d2[:, :1]) / (2 * sigma2))          # the nearest: exactly 1
    w = rbf[:, :k] - (rbf[:, k:] if extra else 0.0)            # 0 for a particle about to leave the k nearest
    w = w.clamp(min=0)
    flat = w.sum(dim=1, keepdim=True) <= 1e-12                 # all k as far as the next one: the nearest alone
    w = torch.where(flat, torch.nn.functional.one_hot(torch.zeros(len(w), dtype=torch.long), k).to(w), w)
    return w / w.sum(dim=1, keepdim=True), j[:, :k]


def blend_translations(particle_offsets: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """Linear blend of translations: out[..., n, :] = sum_j weight[n, j] * particle_offsets[..., index[n, j], :].

    particle_offsets: [..., K, 3] (e.g. [K, 3] or [T, K, 3]); index: [N, k] int64; weight: [N, k].
    Returns [..., N, 3]. Index values are not range-checked here (the hot path); `skin_weights` makes them valid.
    """
    if particle_offsets.dim() < 2 or particle_offsets.shape[-1] != 3:
        raise ValueError(f"particle_offsets: expected shape [..., K, 3], got {list(particle_offsets.shape)}")
    if index.dim() != 2 or weight.shape != index.shape:
        raise ValueError(f"index, weight: expected equal shapes [N, k], got {list(index.shape)} "
                         f"and {list(weight.shape)}")
    if index.dtype != torch.int64:
        raise ValueError(f"index: expected int64, got {index.dtype}")
    gathered = particle_offsets[..., index, :]                 # [..., N, k, 3]
    return (gathered * weight[..., None].to(particle_offsets.dtype)).sum(dim=-2)
