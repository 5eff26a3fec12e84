"""Lazy, loud loading of the compiled splatting extension.

Order: 1 a prebuilt module `cuda_ext._C` (from `python -m cuda_ext.build`), 2 a JIT build with
torch.utils.cpp_extension, cached under $TORCH_EXTENSIONS_DIR (default ~/.cache/audioavatar/torch_extensions)
so it is paid once (about 1.5 min cold on 2 cores). The cached build is named by a hash of its sources, flags
and torch version (`build_name`), so two checkouts of different code on one machine each keep their own build
instead of rebuilding over each other's, and checkouts of the same code share one: the build compiles a copy of the
sources staged under that name (`stage`), since torch rebuilds whenever the source paths or include paths it is given
change, and two checkouts built from their own folders took turns rebuilding it (1.5 min each time). If both fail,
one RuntimeError names both failures.
CUDA sources join the build when torch has CUDA and nvcc is found; otherwise the CPU kernels alone build.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import shutil
import sys
from pathlib import Path

CSRC = Path(__file__).resolve().parent / "csrc"
EXT_NAME = "audioavatar_splat"


def sources(with_cuda: bool, base: Path | None = None) -> list[str]:
    """C++ (and, with CUDA, .cu) source files of the extension, in base (default: this checkout's csrc/)."""
    base = CSRC if base is None else base
    srcs = [base / "bindings.cpp", *sorted((base / "cpu").glob("*.cpp"))]
    if with_cuda:
        srcs += [base / "cuda_ops.cpp", *sorted((base / "cuda").glob("*.cu"))]
    return [str(s) for s in srcs]


def build_flags(with_cuda: bool, base: Path | None = None) -> dict:
    # -march=native: the kernels are built on the machine that runs them (JIT), so use all its SIMD.
    cflags = ["-O3", "-march=native", "-fopenmp"] + (["-DWITH_CUDA"] if with_cuda else [])
    include = str(CSRC if base is None else base)
    flags = dict(extra_cflags=cflags, extra_ldflags=["-fopenmp"], extra_include_paths=[include])
    if with_cuda:
        flags["extra_cuda_cflags"] = ["-O3", "--use_fast_math", "-DWITH_CUDA"]
    return flags


def _cuda_available() -> bool:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME

    return torch.version.cuda is not None and torch.cuda.is_available() and CUDA_HOME is not None


def build_name(with_cuda: bool) -> str:
    """EXT_NAME + _cpu/_cuda + a hash of every source and header, the build flags and the torch version."""
    import torch

    flags = {k: v for k, v in build_flags(with_cuda).items() if k != "extra_include_paths"}  # the checkout's path
    h = hashlib.sha256(repr((flags, torch.__version__)).encode())
    for path in sorted(set(sources(with_cuda)) | {str(p) for p in CSRC.rglob("*.h")}):
        h.update(Path(path).name.encode())
        h.update(Path(path).read_bytes())
    return f"{EXT_NAME}_{'cuda' if with_cuda else 'cpu'}_{h.hexdigest()[:12]}"


def jit_build(verbose: bool = False):
    """Build (or reuse the cached build of) the extension and return the module."""
    from torch.utils.cpp_extension import load as _load

    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "audioavatar" / "torch_extensions"))
    with_cuda = _cuda_available()
    name = build_name(with_cuda)
    root = Path(os.environ["TORCH_EXTENSIONS_DIR"])
    root.mkdir(parents=True, exist_ok=True)
    if not verbose:
        print(f"[cuda_ext] loading the splatting extension '{name}' (first build takes ~1.5 min)...",
              file=sys.stderr, flush=True)
    with _build_owner(root / f"{name}.owner"):
        _clear_stale_lock(root / name / "lock")
        base = stage(root, name)
        return _load(name=name, sources=sources(with_cuda, base), verbose=verbose, **build_flags(with_cuda, base))


def stage(root: Path, name: str) -> Path:
    """root/<name>.src: a copy of this checkout's csrc/ that every checkout of the same code (the same name) builds
    from, made once (copied beside it, then renamed into place)."""
    target = root / f"{name}.src"
    if not target.is_dir():
        tmp = root / f"{name}.src.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(CSRC, tmp)
        try:
            tmp.rename(target)
        except OSError:                               # another process staged it first: the same files
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextlib.contextmanager
def _build_owner(path: Path):
    """Hold an exclusive flock on path while building or loading. The kernel drops it when its holder dies, however
    it dies, so whoever holds it knows that no build is running: torch's own lock file, which has no owner and
    outlives a killed build (SIGTERM, SIGKILL), can then be cleared at once instead of waited on forever."""
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("[cuda_ext] another process is building the splatting extension; waiting for it...",
                  file=sys.stderr, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _clear_stale_lock(lock: Path) -> None:
    """Remove torch's build lock, saying so; called only while holding _build_owner, so no live build owns it."""
    if lock.exists():
        print(f"[cuda_ext] removing a build lock left by a process that died mid-build: {lock}", file=sys.stderr,
              flush=True)
        lock.unlink(missing_ok=True)


def _prebuilt():
    """The ahead-of-time module, refused when any source is newer than it (a stale build)."""
    from . import _C  # type: ignore[attr-defined]

    newest = max(Path(p).stat().st_mtime for p in sources(False) + [str(p) for p in CSRC.rglob("*.h")])
    if Path(_C.__file__).stat().st_mtime < newest:
        raise ImportError(f"{_C.__file__} is older than the sources in {CSRC}; rebuild: python -m cuda_ext.build")
    return _C


@functools.lru_cache(maxsize=None)
def load():
    """The compiled module; raises one RuntimeError naming both failures if nothing loads."""
    try:
        return _prebuilt()
    except ImportError as e:
        prebuilt_error = f"{type(e).__name__}: {e}"
    try:
        return jit_build()
    except Exception as e:  # noqa: BLE001 - reported below with the prebuilt failure
        raise RuntimeError(
            "cuda_ext: no splatting backend could be loaded.\n"
            f"  1. prebuilt module cuda_ext._C: {prebuilt_error}\n"
            f"  2. JIT build from {CSRC}: {type(e).__name__}: {e}\n"
            "Use backend='reference' for the pure-torch path, or fix the compiler setup (g++, ninja)."
        ) from e
