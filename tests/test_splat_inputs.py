"""Bad input to rasterization() is a ValueError naming the argument and what was wrong, never a crash or a
silent black image; and a backend that cannot load says why, naming both attempts."""
import pytest
import torch

import cuda_ext
from cuda_ext import _backend
from splat_cases import Case, random_scene


@pytest.fixture
def scene():
    case = Case(n=40, width=32, height=24, cameras=1, sh_degree=None, seed=0)
    params, viewmats, Ks = random_scene(case)
    return dict(means=params[0], quats=params[1], scales=params[2], opacities=params[3], colors=params[4],
                viewmats=viewmats, Ks=Ks, width=32, height=24)


def nan_at(t, i=0):
    t = t.clone()
    t.view(-1)[i] = float("nan")
    return t


BAD = {
    "means shape": (dict(means=lambda s: s["means"][:, :2]), r"means: expected shape \[\*, 3\], got \[40, 2\]"),
    "quats count": (dict(quats=lambda s: s["quats"][:-1]), r"quats: expected shape \[40, 4\], got \[39, 4\]"),
    "NaN means": (dict(means=lambda s: nan_at(s["means"], 5)), r"means: must be finite, found 1 NaN"),
    "negative scales": (dict(scales=lambda s: -s["scales"]), r"scales: must be > 0"),
    "zero quaternion": (dict(quats=lambda s: s["quats"] * 0), r"quats: .*non-zero"),
    "opacity logits": (dict(opacities=lambda s: s["opacities"] * 10 - 5), r"opacities: must lie in \[0, 1\]"),
    "zero width": (dict(width=lambda s: 0), r"width: expected a positive int, got 0"),
    "zero height": (dict(height=lambda s: 0), r"height: expected a positive int, got 0"),
    "inf camera": (dict(viewmats=lambda s: s["viewmats"] * float("inf")), r"viewmats: must be finite"),
    "NaN intrinsics": (dict(Ks=lambda s: nan_at(s["Ks"])), r"Ks: must be finite"),
    "negative focal": (dict(Ks=lambda s: s["Ks"] * torch.tensor([-1.0, 1, 1])), r"Ks: focal lengths"),
    "colors count": (dict(colors=lambda s: s["colors"][:3]), r"colors: expected shape"),
    "NaN SH": (dict(colors=lambda s: nan_at(torch.rand(40, 16, 3), 7)), r"colors: SH coefficients must be finite"),
    "float64 means": (dict(means=lambda s: s["means"].double()), r"means: expected dtype float32"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_names_the_argument(scene, name):
    changes, pattern = BAD[name]
    sh_degree = 3 if name == "NaN SH" else None
    kwargs = dict(scene)
    for key, f in changes.items():
        kwargs[key] = f(scene)
    with pytest.raises(ValueError, match=pattern):
        cuda_ext.rasterization(**kwargs, sh_degree=sh_degree)


def test_bad_sh_and_mode_and_background(scene):
    with pytest.raises(ValueError, match=r"sh_degree=3 needs at least 16 SH coefficients"):
        cuda_ext.rasterization(**{**scene, "colors": torch.rand(40, 9, 3)}, sh_degree=3)
    with pytest.raises(ValueError, match=r"render_mode: expected one of"):
        cuda_ext.rasterization(**scene, render_mode="RGBA")
    with pytest.raises(ValueError, match=r"backgrounds: expected shape"):
        cuda_ext.rasterization(**scene, backgrounds=torch.rand(2, 3))
    with pytest.raises(ValueError, match=r"backend: expected one of"):
        cuda_ext.rasterization(**scene, backend="numba")


def test_backend_failure_names_both_attempts(monkeypatch):
    monkeypatch.setattr(_backend, "jit_build", lambda: (_ for _ in ()).throw(OSError("no compiler here")))
    _backend.load.cache_clear()
    try:
        with pytest.raises(RuntimeError) as err:
            _backend.load()
        text = str(err.value)
        assert "prebuilt module cuda_ext._C" in text and "no compiler here" in text and "JIT build" in text
    finally:
        _backend.load.cache_clear()


def test_a_stale_build_lock_is_removed_and_a_fresh_one_kept(tmp_path, capsys):
    import os
    import time

    from cuda_ext._backend import STALE_LOCK_S, _clear_stale_lock
    lock = tmp_path / "lock"
    lock.touch()
    _clear_stale_lock(lock)
    assert lock.exists()                                              # a build may be running: wait for it
    old = time.time() - STALE_LOCK_S - 5
    os.utime(lock, (old, old))
    _clear_stale_lock(lock)
    assert not lock.exists() and "stale build lock" in capsys.readouterr().err
    _clear_stale_lock(lock)                                           # no lock: nothing to do
