#!/usr/bin/env bash
# On a machine with a CUDA GPU, nvcc and a CUDA build of torch: build the splatting extension with its CUDA
# kernels, run the tests that compare them against the pure-torch reference (cuda_ext/reference.py) and
# gsplat's torch functions, and time them (bench/render.py; bench/render_vs_gsplat.py when gsplat's own CUDA
# backend builds). Logs go to ${OUT:-gpu_check}/.
#   bash scripts/gpu_check.sh    # python3 on PATH needs torch (CUDA), numpy, pytest, pyyaml, tqdm; gsplat optional
# Wheels under .whl/ (e.g. gsplat, for a machine with no registry) are installed to /tmp/site first.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check}"; mkdir -p "$out"
py="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-/tmp/audioavatar_ext}" MAX_JOBS="${MAX_JOBS:-16}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ls .whl/*.whl >/dev/null 2>&1; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nvcc --version | tail -1
  "$py" -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__)"
} 2>&1 | tee "$out/env.txt"
# gsplat's CUDA backend compiles at import (minutes): start it now, use it at the end.
MAX_JOBS=8 "$py" -c "import gsplat.cuda._backend as b; assert b._C is not None; print('gsplat CUDA backend ok')" \
    >"$out/gsplat_build.log" 2>&1 &
gsplat_pid=$!
t0=$(date +%s)
"$py" -c "
from cuda_ext import _backend
m = _backend.jit_build(verbose=True)
print('built', m.__file__, 'with_cuda:', m.with_cuda)
" >"$out/build.log" 2>&1; rc=$?
echo "build rc=$rc in $(( $(date +%s) - t0 )) s"; tail -3 "$out/build.log"
[ $rc -eq 0 ] || exit $rc
"$py" -m pytest -q -rs -p no:cacheprovider tests/test_splat_kernels.py tests/test_splat_inputs.py tests/test_knn.py \
    tests/test_decoder.py tests/test_gsplat_parity.py tests/test_cuda_build.py "$@" 2>&1 | tee "$out/tests.log" | tail -25
"$py" bench/render.py --device cuda --cases 256x256/10k,512x512/50k,512x512/200k,1024x1024/500k --repeats 20 \
    --ref-repeats 3 2>&1 | tee "$out/bench_render.jsonl"
wait $gsplat_pid && "$py" bench/render_vs_gsplat.py 2>&1 | tee "$out/bench_vs_gsplat.jsonl" \
    || { echo "gsplat's CUDA backend did not build:"; tail -5 "$out/gsplat_build.log"; }
