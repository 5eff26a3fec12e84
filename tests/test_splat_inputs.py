"""Bad input to rasterization() is a ValueError naming the argument and what was wrong, never a crash or a
silent black image; and a backend that cannot load says why, naming both attempts."""
from pathlib import Path

import pytest
import torch

import cuda_ext
from cuda_ext import _backend, ops, reference
from splat_cases import Case, random_scene


@pytest.fixture
def scene(device):
    case = Case(n=40, width=32, height=24, cameras=1, sh_degree=None, seed=0)
    params, viewmats, Ks = random_scene(case, device)
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
    "negative focal": (dict(Ks=lambda s: s["Ks"] * s["Ks"].new_tensor([-1.0, 1, 1])), r"Ks: focal lengths"),
    "colors count": (dict(colors=lambda s: s["colors"][:3]), r"colors: expected shape"),
    "NaN SH": (dict(colors=lambda s: nan_at(torch.rand(40, 16, 3).to(s["means"].device), 7)), r"colors: SH coefficients must be finite"),
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


def test_value_rules_report_the_first_failure_in_argument_order(scene):
    """The value rules are read back together (one host sync); the error is still the first in argument order."""
    kwargs = {**scene, "means": nan_at(scene["means"], 3), "scales": -scene["scales"], "Ks": nan_at(scene["Ks"])}
    with pytest.raises(ValueError, match=r"^means: must be finite"):
        cuda_ext.rasterization(**kwargs)
    with pytest.raises(ValueError, match=r"^scales: must be > 0"):
        cuda_ext.rasterization(**{**kwargs, "means": scene["means"]})
    with pytest.raises(ValueError, match=r"^Ks: must be finite"):
        cuda_ext.rasterization(**{**kwargs, "means": scene["means"], "scales": scene["scales"]})


def test_huge_finite_values_are_not_called_non_finite(scene):
    """The finite rule sums first: 40 * 3e38 overflows to inf, yet every value is finite, so no error."""
    far = scene["means"].clone()
    far[:, 2] = 3e38
    img, alpha, _ = cuda_ext.rasterization(**{**scene, "means": far})
    assert float(alpha.max()) == 0.0 and float(img.abs().max()) == 0.0   # all beyond the far plane: nothing drawn


def test_bad_sh_and_mode_and_background(scene):
    with pytest.raises(ValueError, match=r"sh_degree=3 needs at least 16 SH coefficients"):
        cuda_ext.rasterization(**{**scene, "colors": torch.rand(40, 9, 3).to(scene["means"].device)}, sh_degree=3)
    with pytest.raises(ValueError, match=r"render_mode: expected one of"):
        cuda_ext.rasterization(**scene, render_mode="RGBA")
    with pytest.raises(ValueError, match=r"backgrounds: expected shape"):
        cuda_ext.rasterization(**scene, backgrounds=torch.rand(2, 3).to(scene["means"].device))
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


def test_a_build_lock_left_by_a_killed_build_is_cleared_without_waiting(tmp_path, capsys):
    """A build killed by SIGKILL leaves torch's lock file behind; the next load waits only while the builder lives."""
    import signal
    import subprocess
    import sys
    import threading

    from cuda_ext._backend import _build_owner, _clear_stale_lock
    owner, lock = tmp_path / "ext.owner", tmp_path / "ext" / "lock"
    lock.parent.mkdir()
    builder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from cuda_ext._backend import _build_owner\n"
         f"with _build_owner(Path({str(owner)!r})):\n"
         f"    Path({str(lock)!r}).touch(); print('building', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=str(Path(__file__).resolve().parent.parent))
    try:
        assert builder.stdout.readline().strip() == "building"
        got = threading.Event()

        def load():
            with _build_owner(owner):
                _clear_stale_lock(lock)
                got.set()
        waiter = threading.Thread(target=load)
        waiter.start()
        assert not got.wait(0.5) and lock.exists()                   # a live build: wait for it
        builder.send_signal(signal.SIGKILL)
        builder.wait()
        assert got.wait(10)                                           # its death frees the owner lock at once
        waiter.join()
    finally:
        builder.kill()
    assert not lock.exists()
    err = capsys.readouterr().err
    assert "another process is building" in err and "left by a process that died" in err


def planted_faults(scene):
    """One input set per rule (reference.value_flags' bit order), each breaking that rule alone, plus a
    clean one; colours [*] are checked as plain values."""
    base = {k: scene[k] for k in ("means", "quats", "scales", "opacities", "viewmats", "Ks", "colors")}
    inf_at = lambda t, i: nan_at(t, i).nan_to_num(nan=float("inf"))  # noqa: E731
    zero_row = base["quats"].clone()
    zero_row[17] = 0.0
    one_opacity = base["opacities"].clone()
    one_opacity[-1] = 1.0 + 1e-6
    cases = [("clean", {}, 0)]
    cases += [(f"{k} non-finite", {k: (nan_at if i % 2 else inf_at)(base[k], base[k].numel() - 1)}, 1 << i)
              for i, k in enumerate(reference.VALUE_SEGMENTS)]
    cases += [("scale zero", {"scales": base["scales"].index_fill(0, torch.tensor([3], device=base["scales"].device),
                                                                  0.0)}, 1 << reference.RULE_SCALES_NOT_POSITIVE),
              ("zero quaternion", {"quats": zero_row}, 1 << reference.RULE_ZERO_QUATERNION),
              ("opacity above 1", {"opacities": one_opacity}, 1 << reference.RULE_OPACITY_OUT_OF_RANGE),
              ("fy zero", {"Ks": base["Ks"] * base["Ks"].new_tensor([1.0, 0.0, 1.0])[:, None]},
               1 << reference.RULE_FOCAL_NOT_POSITIVE),
              ("NaN scale", {"scales": nan_at(base["scales"], 4)}, 1 << 2)]   # NaN is not <= 0: one bit
    return [(name, {**base, **change}, want) for name, change, want in cases]


def test_value_flags_kernel_matches_reference_and_hand_masks(scene):
    """Each planted fault sets exactly its rule's bit, in the C++/CUDA pass and in its torch twin."""
    for name, tensors, want in planted_faults(scene):
        for backend in ("kernel", "reference"):
            got = ops.value_flags(**tensors, backend=backend)
            assert got.shape == (1,) and got.dtype == torch.int32 and got.device == scene["means"].device
            assert int(got) == want, f"{name} ({backend}): mask {int(got):#x}, want {want:#x}"
    together = {**planted_faults(scene)[1][1], "opacities": scene["opacities"] * 3}
    assert int(ops.value_flags(**together)) == 1 | 1 << reference.RULE_OPACITY_OUT_OF_RANGE


def test_value_flags_sees_a_fault_anywhere_in_a_large_input(device):
    """Big enough for many blocks / threads: a single bad value in the last row is still found."""
    n = 300_000
    g = torch.Generator().manual_seed(0)
    t = dict(means=torch.randn(n, 3, generator=g), quats=torch.randn(n, 4, generator=g),
             scales=torch.rand(n, 3, generator=g) + 0.01, opacities=torch.rand(n, generator=g),
             viewmats=torch.eye(4)[None], Ks=torch.eye(3)[None], colors=torch.rand(n, 3, generator=g))
    t = {k: v.to(device) for k, v in t.items()}
    assert int(ops.value_flags(**t)) == 0
    t["colors"][-1, -1] = float("nan")
    t["scales"][-1, 0] = -1.0
    assert int(ops.value_flags(**t)) == 1 << 6 | 1 << reference.RULE_SCALES_NOT_POSITIVE


def test_the_build_cache_is_keyed_by_the_sources(tmp_path, monkeypatch):
    """Two checkouts with different kernel code get different cached builds (they used to share one name and
    rebuild over each other); the same code gets the same name."""
    import shutil

    from cuda_ext import _backend
    name = _backend.build_name(False)
    assert name.startswith("audioavatar_splat_cpu_") and name == _backend.build_name(False)
    other = tmp_path / "csrc"
    shutil.copytree(_backend.CSRC, other)
    monkeypatch.setattr(_backend, "CSRC", other)
    assert _backend.build_name(False) == name                          # a second checkout of the same code
    kernel = sorted((other / "cpu").glob("*.cpp"))[0]
    kernel.write_text(kernel.read_text() + "\n// changed\n")
    assert _backend.build_name(False) != name                          # edited code: its own build


def test_checkouts_of_the_same_code_build_from_one_staged_copy(tmp_path, monkeypatch):
    """torch rebuilds an extension whenever the source or include paths it is given change, so two checkouts of the
    same code, each building from its own csrc/, took turns rebuilding the shared cache. Both now build from one
    copy staged under the build's name: the same paths and flags, whichever checkout asks."""
    import shutil

    from cuda_ext import _backend
    name = _backend.build_name(False)
    root = tmp_path / "cache"
    root.mkdir()
    first = _backend.stage(root, name)
    args = (_backend.sources(False, first), _backend.build_flags(False, first))
    other = tmp_path / "checkout2" / "csrc"
    shutil.copytree(_backend.CSRC, other)
    monkeypatch.setattr(_backend, "CSRC", other)
    second = _backend.stage(root, _backend.build_name(False))
    assert second == first and (_backend.sources(False, second), _backend.build_flags(False, second)) == args
    staged = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert staged == sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file())
    for rel in staged:
        assert (first / rel).read_bytes() == (other / rel).read_bytes()
    assert str(other) not in repr(args) and sorted(root.iterdir()) == [first]      # no leftover temporary copy
