"""engine.avatar.knn against an independent numpy brute force: full distance matrix, stable argsort."""
import numpy as np
import pytest
import torch

from engine.avatar.knn import knn


def brute(query, ref, k, exclude_self=False):
    """(d2 [Q, k], index [Q, k]) from the full [Q, R] matrix; ties -> lower index (stable argsort)."""
    q, r = np.asarray(query, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    d2 = ((q[:, None, :] - r[None, :, :]) ** 2).sum(-1)
    if exclude_self:
        np.fill_diagonal(d2, np.inf)
    idx = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d2, idx, axis=1), idx


def check(query, ref, k, **kw):
    d2, idx = knn(query, ref, k, **kw)
    want_d2, want_idx = brute(query.numpy(), ref.numpy(), k, kw.get("exclude_self", False))
    assert d2.shape == idx.shape == (query.shape[0], k)
    assert idx.dtype == torch.int64 and d2.dtype == query.dtype
    np.testing.assert_array_equal(idx.numpy(), want_idx)
    tol = 1e-12 if query.dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(d2.numpy(), want_d2, rtol=tol, atol=tol)
    assert bool((d2[:, 1:] >= d2[:, :-1]).all())


@pytest.mark.parametrize("Q, R, k, chunk", [(1, 1, 1, 4096), (37, 50, 8, 16), (300, 90, 1, 64),
                                            (200, 257, 8, 100), (50, 9, 9, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_brute_force(Q, R, k, chunk, dtype):
    g = torch.Generator().manual_seed(Q * 1000 + R)
    query = torch.randn(Q, 3, generator=g, dtype=torch.float64).to(dtype)
    ref = torch.randn(R, 3, generator=g, dtype=torch.float64).to(dtype)
    check(query, ref, k, chunk=chunk)


def test_more_queries_than_the_default_chunk():
    g = torch.Generator().manual_seed(1)
    query, ref = torch.rand(5000, 3, generator=g, dtype=torch.float64), torch.rand(40, 3, generator=g,
                                                                                  dtype=torch.float64)
    check(query, ref, 8)


@pytest.mark.parametrize("k, chunk", [(1, 4096), (8, 4096), (8, 7), (3, 2)])
def test_exclude_self(k, chunk):
    pts = torch.randn(60, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    check(pts, pts, k, chunk=chunk, exclude_self=True)
    _, idx = knn(pts, pts, k, chunk=chunk, exclude_self=True)
    assert not bool((idx == torch.arange(60)[:, None]).any())


@pytest.mark.parametrize("chunk", [4096, 3])
def test_duplicates_tie_to_the_lower_index(chunk):
    base = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 2, 0]], dtype=torch.float64)
    ref = base[torch.tensor([2, 0, 1, 0, 1, 0, 2, 1])]          # copies of each point at several indices
    query = torch.cat([base, base + 0.25])
    for k in (1, 2, 3, 5, 8):
        check(query, ref, k, chunk=chunk)
    d2, idx = knn(base[:1], ref, 3, chunk=chunk)                # three copies of the origin: 1, 3, 5
    assert idx.tolist() == [[1, 3, 5]] and d2.tolist() == [[0.0, 0.0, 0.0]]
    # Equidistant but distinct points (a square around the query) also tie by index.
    square = torch.tensor([[1.0, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]])
    assert knn(torch.zeros(1, 3), square.flip(0), 2, chunk=chunk)[1].tolist() == [[0, 1]]
    check(ref, ref, 4, chunk=chunk, exclude_self=True)          # self excluded, its copies kept


def test_empty_query_and_deterministic_repeat():
    ref = torch.randn(10, 3)
    d2, idx = knn(torch.zeros(0, 3), ref, 2)
    assert d2.shape == idx.shape == (0, 2)
    q = torch.randn(500, 3)
    a, b = knn(q, ref, 4, chunk=64), knn(q, ref, 4, chunk=64)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("args, kwargs, match", [
    ((torch.zeros(4, 2), torch.zeros(4, 3), 1), {}, r"query: expected shape \[\*, 3\]"),
    ((torch.zeros(4, 3), torch.zeros(4), 1), {}, r"ref: expected shape \[\*, 3\]"),
    ((torch.zeros(4, 3, dtype=torch.int64), torch.zeros(4, 3), 1), {}, "query: expected a floating-point"),
    (([[0.0, 0, 0]], torch.zeros(4, 3), 1), {}, "query: expected a torch.Tensor"),
    ((torch.zeros(4, 3), torch.zeros(0, 3), 1), {}, "ref: is empty"),
    ((torch.zeros(4, 3), torch.zeros(4, 3), 0), {}, r"k: must be an int in \[1, R = 4\], got 0"),
    ((torch.zeros(4, 3), torch.zeros(4, 3), 5), {}, "k: .* got 5"),
    ((torch.zeros(4, 3), torch.zeros(4, 3), 2.0), {}, "k: .* got 2.0"),
    ((torch.zeros(4, 3), torch.zeros(4, 3), 4), {"exclude_self": True}, r"k: .*R - 1 \(exclude_self\) = 3"),
    ((torch.zeros(3, 3), torch.zeros(4, 3), 1), {"exclude_self": True}, "exclude_self: needs"),
    ((torch.tensor([[0.0, float("nan"), 0]]), torch.zeros(4, 3), 1), {}, "query: contains non-finite"),
    ((torch.zeros(4, 3), torch.tensor([[float("inf"), 0, 0]]), 1), {}, "ref: contains non-finite"),
    ((torch.zeros(4, 3), torch.zeros(4, 3, dtype=torch.float64), 1), {}, "ref: dtype"),
    ((torch.zeros(4, 3), torch.zeros(4, 3), 1), {"chunk": 0}, "chunk: must be a positive int"),
    ((torch.zeros(1, 3), torch.tensor([[3e19, 0, 0]]), 1), {}, "squared distances overflow"),
])
def test_bad_input_raises_naming_the_argument(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        knn(*args, **kwargs)


def test_runs_on_the_device(device):
    g = torch.Generator().manual_seed(3)
    q, r = torch.randn(700, 3, generator=g), torch.randn(300, 3, generator=g)
    d2, idx = knn(q.to(device), r.to(device), 8, chunk=128)
    assert d2.device.type == idx.device.type == torch.device(device).type
    want_d2, want_idx = brute(q.numpy(), r.numpy(), 8)
    np.testing.assert_allclose(d2.cpu().numpy(), want_d2, rtol=1e-5, atol=1e-5)
    assert (idx.cpu().numpy() == want_idx).mean() > 0.99          # float32 rounding may swap near-ties
