"""Ahead-of-time build of the splatting extension as `cuda_ext._C` (what `_backend.load` tries first):

    python -m cuda_ext.build

Useful for images and wheels that should not compile on first use. Rebuild after changing csrc/: a stale
prebuilt module (older than any source) is refused by the loader, which then falls back to the JIT build.
"""
from __future__ import annotations

import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

from torch.utils.cpp_extension import load

from ._backend import _cuda_available, build_flags, sources

PACKAGE = Path(__file__).resolve().parent


def main() -> None:
    with_cuda = _cuda_available()
    with tempfile.TemporaryDirectory() as tmp:
        load(name="_C", sources=sources(with_cuda), build_directory=tmp, verbose=True, is_python_module=True,
             **build_flags(with_cuda))
        built = next(Path(tmp).glob("_C*.so"))
        target = PACKAGE / ("_C" + sysconfig.get_config_var("EXT_SUFFIX"))
        shutil.copy2(built, target)
    print(f"wrote {target} (CUDA: {with_cuda})", file=sys.stderr)


if __name__ == "__main__":
    main()
