#!/usr/bin/env bash
# Sets up .venv with the test extras and runs the test suite (CPU; CUDA tests run where a GPU is visible).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/python -m pytest -q "$@"
