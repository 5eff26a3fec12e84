"""Exact k-nearest-neighbour search in 3-D, in plain torch (no pytorch3d, no scipy).

`knn(query [Q, 3], ref [R, 3], k)` gives squared distances [Q, k] (ascending) and indices [Q, k] into ref.
`engine.avatar.skinning` uses it to bind every Gaussian to its nearest control particles, and to pick the default
RBF width from particle spacing. The search is blocked over queries and over refs (`chunk` x `chunk` pairs at
a time, a running top-k merged block by block), so memory stays bounded for Q, R ~ 200k on any device.

Distances are summed from exact coordinate differences, (qx-rx)^2 + (qy-ry)^2 + (qz-rz)^2, not from the
|q|^2 + |r|^2 - 2 q.r expansion: identical points get exactly the same distance (so ties are real ties) and
there is no cancellation for nearby points. Ties are broken by the lower ref index, deterministically.
"""
from __future__ import annotations

import torch
from torch import Tensor


def check_points(name: str, x: Tensor) -> None:
    """ValueError naming `name` unless x is a finite floating-point tensor [*, 3]."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.shape[1] != 3:
        raise ValueError(f"{name}: expected shape [*, 3], got {list(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got {x.dtype}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: contains non-finite values (nan or inf)")


def _sq_dists(qt: Tensor, rt: Tensor) -> Tensor:
    """Squared distances [q, r] between the columns of qt [3, q] and rt [3, r]: one multiply and one add
    per coordinate, each rounded (no fused multiply-add), so equal inputs give bitwise-equal outputs."""
    d2 = torch.sub(qt[0, :, None], rt[0, None, :])
    d2.mul_(d2)
    buf = torch.empty_like(d2)
    for c in (1, 2):
        torch.sub(qt[c, :, None], rt[c, None, :], out=buf)
        d2.add_(buf.mul_(buf))
    return d2


def _block_topk(d2: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k smallest entries of each row of d2 [q, r] ordered by (distance, column); k <= r.
    Returns (values [q, k], columns [q, k])."""
    if k == d2.shape[1]:
        vals, cols = d2, torch.arange(k, device=d2.device).expand(d2.shape[0], k)
    else:
        vals, cols = torch.topk(d2, k + 1, dim=1, largest=False, sorted=True)
        # Where the (k+1)-th smallest value equals the k-th there is a tie at the cut, and topk may have
        # kept any of the tied columns: sort those rows in full (stable: equal values stay in column order).
        tied = vals[:, k] == vals[:, k - 1]
        vals, cols = vals[:, :k], cols[:, :k]
        if bool(tied.any()):
            rows = tied.nonzero().squeeze(1)
            v, c = torch.sort(d2[rows], dim=1, stable=True)
            vals[rows], cols[rows] = v[:, :k], c[:, :k]
    # Order the kept set by (distance, column): by column first, then a stable sort by distance.
    cols, order = torch.sort(cols, dim=1)
    vals = vals.gather(1, order)
    vals, order = torch.sort(vals, dim=1, stable=True)
    return vals, cols.gather(1, order)


def knn(query: Tensor, ref: Tensor, k: int, chunk: int = 4096,
        exclude_self: bool = False) -> tuple[Tensor, Tensor]:
    """k nearest ref points of every query point.

    query: [Q, 3]; ref: [R, 3] (same floating dtype and device); k: 1 <= k <= R (R - 1 with exclude_self).
    chunk: block size; at most chunk x chunk distances are held at once.
    exclude_self: query is ref (same points, same order); point i never lists itself. A duplicate of i at
        another index is still a neighbour (at distance 0).
    Returns (d2 [Q, k] squared distances ascending, index [Q, k] int64 into ref); equal distances are
    ordered by the lower index.
    """
    check_points("query", query)
    check_points("ref", ref)
    if ref.shape[0] == 0:
        raise ValueError("ref: is empty (needs at least one point)")
    if ref.dtype != query.dtype:
        raise ValueError(f"ref: dtype {ref.dtype} differs from query dtype {query.dtype}")
    if ref.device != query.device:
        raise ValueError(f"ref: on {ref.device}, query on {query.device}")
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"chunk: must be a positive int, got {chunk!r}")
    R = ref.shape[0]
    if exclude_self and (query.shape != ref.shape or not torch.equal(query, ref)):
        raise ValueError("exclude_self: needs query and ref to be the same points in the same order")
    limit = R - 1 if exclude_self else R
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= limit:
        what = "R - 1 (exclude_self)" if exclude_self else "R"
        raise ValueError(f"k: must be an int in [1, {what} = {limit}], got {k!r}")

    both = torch.cat([query, ref])
    span = (both.max(dim=0).values - both.min(dim=0).values).abs().max()
    if not bool(torch.isfinite(3 * span * span)):
        raise ValueError(f"query, ref: coordinates span {float(span):.3g}, too wide for {ref.dtype} "
                         "(squared distances overflow)")

    Q = query.shape[0]
    qt, rt = query.t().contiguous(), ref.t().contiguous()             # [3, Q], [3, R]: contiguous columns
    out_d2 = torch.empty(Q, k, dtype=query.dtype, device=query.device)
    out_idx = torch.empty(Q, k, dtype=torch.int64, device=query.device)
    for q0 in range(0, Q, chunk):
        q = qt[:, q0:q0 + chunk]
        best_d2 = best_idx = None
        for r0 in range(0, R, chunk):
            r = rt[:, r0:r0 + chunk]
            d2 = _sq_dists(q, r)
            if exclude_self:                # query q0 + a is ref r0 + b where b - a = q0 - r0: a diagonal
                d2.diagonal(q0 - r0).fill_(float("inf"))
            vals, cols = _block_topk(d2, min(k, r.shape[1]))
            if best_d2 is None:
                best_d2, best_idx = vals, cols + r0
                continue
            # Merge: every index kept so far is below every index of this block, and both lists are in
            # (distance, index) order, so a stable sort of the concatenation by distance keeps that order.
            cat_d2 = torch.cat([best_d2, vals], dim=1)
            cat_idx = torch.cat([best_idx, cols + r0], dim=1)
            cat_d2, order = torch.sort(cat_d2, dim=1, stable=True)
            best_d2, best_idx = cat_d2[:, :k], cat_idx.gather(1, order[:, :k])
        out_d2[q0:q0 + q.shape[1]] = best_d2
        out_idx[q0:q0 + q.shape[1]] = best_idx
    return out_d2, out_idx
