"""engine.avatar.skinning: RBF binding of points to control particles, region limits, and translation blending."""
import math

import pytest
import torch

from engine.avatar.skinning import blend_translations, default_sigma, skin_weights


def cloud(n, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    pts = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return pts, torch.randn(k, 3, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rows_sum_to_one_and_indices_are_the_nearest(dtype):
    pts, par = (x.to(dtype) for x in cloud(500, 40))
    idx, w = skin_weights(pts, par, k=4)
    assert idx.shape == w.shape == (500, 4) and idx.dtype == torch.int64 and w.dtype == dtype
    assert bool(((idx >= 0) & (idx < 40)).all()) and bool((w > 0).all())
    torch.testing.assert_close(w.sum(1), torch.ones(500, dtype=dtype), rtol=0, atol=1e-6)
    d2 = ((pts[:, None] - par[None]) ** 2).sum(-1)
    assert torch.equal(idx, d2.topk(4, largest=False).indices)  # random data: no ties
    assert bool((w[:, :-1] >= w[:, 1:]).all())                  # nearer particle, larger weight


def test_point_on_a_particle_gives_it_the_largest_weight():
    _, par = cloud(0, 30, seed=1)
    idx, w = skin_weights(par.clone(), par, k=4)
    assert torch.equal(idx[:, 0], torch.arange(30))
    assert bool((w[:, 0] > w[:, 1:].max(dim=1).values).all())


def test_k1_weight_is_exactly_one():
    pts, par = cloud(200, 10, seed=2)
    idx, w = skin_weights(pts, par, k=1)
    assert bool((w == 1).all())
    assert torch.equal(idx[:, 0], ((pts[:, None] - par[None]) ** 2).sum(-1).argmin(1))


def test_default_sigma_is_the_median_nearest_particle_distance():
    par = torch.tensor([[0.0, 0, 0], [1, 0, 0], [3, 0, 0], [7, 0, 0], [7, 0, 0]])
    # nearest-other distances 1, 1, 2, 0, 0 -> zeros left out -> median of (1, 1, 2) = 1
    assert default_sigma(par) == 1.0
    assert default_sigma(par[:1]) == 1.0
    assert default_sigma(par[:2] * 10) == 10.0


def test_uniform_translation_moves_every_point_by_it():
    pts, par = cloud(400, 25, seed=3)
    idx, w = skin_weights(pts, par, k=4)
    t = torch.tensor([0.3, -1.2, 2.5], dtype=torch.float64)
    out = blend_translations(t.expand(25, 3), idx, w)
    torch.testing.assert_close(out, t.expand(400, 3), rtol=0, atol=1e-6)
    # leading batch dims: [T, K, 3] -> [T, N, 3], frame by frame the same as unbatched
    offsets = torch.randn(5, 25, 3, dtype=torch.float64)
    batched = blend_translations(offsets, idx, w)
    assert batched.shape == (5, 400, 3)
    torch.testing.assert_close(batched[2], blend_translations(offsets[2], idx, w))


def test_single_particle_translation_moves_only_its_points():
    pts, par = cloud(400, 25, seed=4)
    idx, w = skin_weights(pts, par, k=3)
    offsets = torch.zeros(25, 3, dtype=torch.float64)
    offsets[7] = torch.tensor([0.0, 0.0, 1.0])
    out = blend_translations(offsets, idx, w)
    bound = (idx == 7).any(1)
    assert bool(bound.any()) and bool((~bound).any())
    assert bool((out[~bound] == 0).all())
    torch.testing.assert_close(out[bound, 2], (w * (idx == 7)).sum(1)[bound])
    assert bool((out[bound, 2] > 0).all())


def test_regions_restrict_binding():
    pts, par = cloud(600, 60, seed=5)
    preg = torch.randint(0, 3, (600,), generator=torch.Generator().manual_seed(0))
    kreg = torch.arange(60) % 3
    idx, w = skin_weights(pts, par, k=4, point_regions=preg, particle_regions=kreg)
    assert torch.equal(kreg[idx], preg[:, None].expand(-1, 4))  # default: same region only
    torch.testing.assert_close(w.sum(1), torch.ones(600, dtype=torch.float64), rtol=0, atol=1e-6)
    # Across regions: region 0 may also use region 2; region 1 only region 0; region 2 its own (missing key).
    allowed = {0: {0, 2}, 1: {0}}
    idx, w = skin_weights(pts, par, k=4, point_regions=preg, particle_regions=kreg, allowed=allowed)
    ok = {0: {0, 2}, 1: {0}, 2: {2}}
    for n in range(600):
        assert set(kreg[idx[n]].tolist()) <= ok[int(preg[n])]
    # With region 0 open to {0, 2}, its points bind to their 4 nearest among those particles.
    pool = (kreg != 1).nonzero().squeeze(1)
    rows = preg == 0
    d2 = ((pts[rows][:, None] - par[pool][None]) ** 2).sum(-1)
    assert torch.equal(idx[rows], pool[d2.topk(4, largest=False).indices])


def test_region_without_particles_raises():
    pts, par = cloud(10, 6)
    preg = torch.tensor([0] * 5 + [4] * 5)
    kreg = torch.tensor([0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match=r"region 4 has no allowed particle"):
        skin_weights(pts, par, point_regions=preg, particle_regions=kreg)
    with pytest.raises(ValueError, match=r"region 0 has no allowed particle"):
        skin_weights(pts, par, point_regions=preg, particle_regions=kreg, allowed={0: {7}, 4: {1}})
    idx, _ = skin_weights(pts, par, point_regions=preg, particle_regions=kreg, allowed={4: {1, 2}})
    assert bool((idx[5:] >= 2).all()) and bool((idx[:5] < 2).all())


def test_fewer_allowed_particles_than_k_pads_with_zero_weight():
    pts, par = cloud(20, 6, seed=6)
    kreg = torch.tensor([0, 0, 1, 1, 1, 1])
    idx, w = skin_weights(pts, par, k=4, point_regions=torch.zeros(20, dtype=torch.int64), particle_regions=kreg)
    assert bool((idx < 2).all()) and bool((w[:, 2:] == 0).all()) and torch.equal(idx[:, 2], idx[:, 0])
    torch.testing.assert_close(w.sum(1), torch.ones(20, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_far_away_point_keeps_finite_weights(dtype):
    _, par = cloud(0, 20, seed=7)
    far = torch.tensor([[1e4, -1e4, 1e4]], dtype=dtype)
    idx, w = skin_weights(far, par.to(dtype), k=4, sigma=0.01)
    assert bool(torch.isfinite(w).all()) and abs(float(w.sum()) - 1) < 1e-6 and float(w[0, 0]) > 0
    _, w = skin_weights(far, par.to(dtype), k=4, sigma=1e-30)   # 1 / (2 sigma^2) overflows: still no nan
    assert w[0].tolist() == [1.0, 0.0, 0.0, 0.0]


def test_hand_computed_weights_on_the_x_axis():
    par = torch.tensor([[0.0, 0, 0], [2.0, 0, 0]], dtype=torch.float64)
    pts = torch.tensor([[0.5, 0, 0], [1.0, 0, 0], [3.0, 0, 0]], dtype=torch.float64)
    sigma = 0.8
    idx, w = skin_weights(pts, par, k=2, sigma=sigma)
    for n, x in enumerate([0.5, 1.0, 3.0]):
        e0, e2 = math.exp(-x**2 / (2 * sigma**2)), math.exp(-(x - 2) ** 2 / (2 * sigma**2))
        want = {0: e0 / (e0 + e2), 1: e2 / (e0 + e2)}
        got = dict(zip(idx[n].tolist(), w[n].tolist()))
        assert got.keys() == want.keys()
        for j in want:
            assert got[j] == pytest.approx(want[j], rel=1e-12, abs=1e-15)
    assert idx.tolist() == [[0, 1], [0, 1], [1, 0]]            # midpoint tie -> lower index first
    assert w[1].tolist() == [0.5, 0.5]


@pytest.mark.parametrize("kwargs, match", [
    ({"k": 0}, "k: must be a positive int"),
    ({"sigma": 0.0}, "sigma: must be a finite positive"),
    ({"sigma": float("nan")}, "sigma: must be a finite positive"),
    ({"point_regions": torch.zeros(8, dtype=torch.int64)}, "give both or neither"),
    ({"allowed": {0: {0}}}, "allowed: needs point_regions"),
    ({"point_regions": torch.zeros(7, dtype=torch.int64), "particle_regions": torch.zeros(5, dtype=torch.int64)},
     r"point_regions: expected an integer tensor of shape \[8\]"),
    ({"point_regions": torch.zeros(8), "particle_regions": torch.zeros(5, dtype=torch.int64)},
     "point_regions: expected integer region labels"),
])
def test_bad_arguments_raise(kwargs, match):
    pts, par = cloud(8, 5)
    with pytest.raises(ValueError, match=match):
        skin_weights(pts, par, **kwargs)
    with pytest.raises(ValueError, match="particles: is empty"):
        skin_weights(pts, par[:0])
    with pytest.raises(ValueError, match="points: contains non-finite"):
        skin_weights(torch.full((2, 3), float("nan"), dtype=torch.float64), par)
    with pytest.raises(ValueError, match=r"index, weight: expected equal shapes"):
        blend_translations(torch.zeros(5, 3), torch.zeros(8, 2, dtype=torch.int64), torch.zeros(8, 3))
    with pytest.raises(ValueError, match=r"particle_offsets: expected shape \[\.\.\., K, 3\]"):
        blend_translations(torch.zeros(5, 2), torch.zeros(8, 2, dtype=torch.int64), torch.zeros(8, 2))


def dense(idx: torch.Tensor, w: torch.Tensor, K: int) -> torch.Tensor:
    """[N, k] index and weight -> [N, K] weight per particle."""
    return torch.zeros(len(idx), K, dtype=w.dtype).scatter_add_(1, idx, w)


def test_local_weights_match_a_hand_computation_and_change_continuously():
    par = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0], [3.0, 0, 0], [10.0, 0, 0]], dtype=torch.float64)
    idx, w = skin_weights(torch.tensor([[0.4, 0.0, 0.0]], dtype=torch.float64), par, k=2, local=True)
    # d = 0.4, 0.6 (the k = 2 nearest), 1.6 (the next); sigma^2 = (0.6 / 2)^2; rbf relative to the nearest
    rbf = [math.exp(-(d * d - 0.16) / (2 * 0.09)) for d in (0.4, 0.6, 1.6)]
    want = torch.tensor([rbf[0] - rbf[2], rbf[1] - rbf[2]], dtype=torch.float64)
    assert idx.tolist() == [[0, 1]]
    torch.testing.assert_close(w[0], want / want.sum())
    # sweep a point along the particles: local weights never jump, the global-sigma ones do where the nearest
    # two change (at x = 1.5 the pair {1, 2} is exact, just before it {0, 1} or {1, 2} swaps partner)
    xs = torch.linspace(0.0, 3.0, 3001, dtype=torch.float64)
    pts = torch.stack([xs, torch.full_like(xs, 0.3), torch.zeros_like(xs)], 1)
    steps = {}
    for local in (True, False):
        i, ww = skin_weights(pts, par, k=2, sigma=2.0, local=local)
        steps[local] = float(dense(i, ww, 5).diff(dim=0).abs().max())
    assert steps[True] < 0.01 < 0.1 < steps[False]
