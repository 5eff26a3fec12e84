"""The CUDA sources compile, even on a machine with no GPU.

Each `cuda_ext/csrc/cuda/*.cu` builds standalone with nvcc (no torch headers, only csrc/ on the include
path), and `cuda_ext/csrc/cuda_ops.cpp` passes a g++ syntax check with -DWITH_CUDA against torch's headers.
Running the kernels, and checking them against `cuda_ext/reference.py`, needs a GPU and is tested elsewhere.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "cuda_ext" / "csrc"
CU_FILES = sorted((CSRC / "cuda").glob("*.cu"))
NVCC = shutil.which("nvcc")

# slow: ~25 s in all (the g++ pass over torch's headers is most of it).
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH: the CUDA sources cannot be compiled")]


def _run(cmd: list[str], cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _failure(what: str, cmd: list[str], proc: subprocess.CompletedProcess) -> str:
    return f"{what} failed (exit {proc.returncode})\n$ {' '.join(cmd)}\n--- stderr ---\n{proc.stderr}\n" \
           f"--- stdout ---\n{proc.stdout}"


def _cuda_include_dir() -> Path | None:
    """The CUDA toolkit's include dir: $CUDA_HOME / $CUDA_PATH, /usr/local/cuda, or next to nvcc."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    if NVCC:
        candidates.append(str(Path(os.path.realpath(NVCC)).parent.parent))
    for c in candidates:
        if c and (Path(c) / "include" / "cuda_runtime_api.h").is_file():
            return Path(c) / "include"
    return None


def test_there_are_cuda_sources():
    assert CU_FILES, f"no .cu files under {CSRC / 'cuda'}"


@pytest.mark.parametrize("cu", CU_FILES, ids=[p.name for p in CU_FILES])
def test_cu_has_no_torch_include(cu: Path):
    """The kernels stay torch-free, so nvcc builds them standalone and fast."""
    includes = re.findall(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', cu.read_text(), flags=re.M)
    torchy = [i for i in includes if i.split("/")[0] in ("torch", "ATen", "c10", "caffe2")]
    assert not torchy, f"{cu.name} includes torch headers {torchy}; only cuda_ops.cpp may"


@pytest.mark.parametrize("cu", CU_FILES, ids=[p.name for p in CU_FILES])
def test_cu_compiles_with_nvcc(cu: Path, tmp_path: Path):
    cmd = [NVCC, "-arch=sm_90", "-std=c++17", "-O3", "-c", "-I", str(CSRC), "-o", str(tmp_path / (cu.stem + ".o")),
           str(cu)]
    proc = _run(cmd)
    assert proc.returncode == 0, _failure(f"nvcc {cu.name}", cmd, proc)
    assert (tmp_path / (cu.stem + ".o")).stat().st_size > 0


def test_cuda_ops_cpp_syntax(tmp_path: Path):
    """cuda_ops.cpp (the torch side of the CUDA ops) is valid C++ against torch's and CUDA's headers."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not on PATH")
    cuda_include = _cuda_include_dir()
    if cuda_include is None:
        pytest.skip("no CUDA include dir (cuda_runtime_api.h) under $CUDA_HOME, /usr/local/cuda or next to nvcc")
    from torch.utils.cpp_extension import include_paths

    torch_includes = [Path(p) for p in include_paths()]
    # A CPU-only torch wheel ships c10/cuda's headers but not the one CMake generates for CUDA builds; stand
    # in for it (it only says whether c10_cuda is a shared library) so the rest can be checked.
    stub = tmp_path / "stub_include"
    generated = Path("c10") / "cuda" / "impl" / "cuda_cmake_macros.h"
    if not any((p / generated).is_file() for p in torch_includes):
        (stub / generated).parent.mkdir(parents=True)
        (stub / generated).write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")

    cmd = [gxx, "-fsyntax-only", "-std=c++17", "-DWITH_CUDA"]
    for inc in [*torch_includes, stub, cuda_include, CSRC, Path(sysconfig.get_paths()["include"])]:
        cmd += ["-I", str(inc)]
    cmd.append(str(CSRC / "cuda_ops.cpp"))
    proc = _run(cmd)
    assert proc.returncode == 0, _failure("g++ -fsyntax-only cuda_ops.cpp", cmd, proc)
