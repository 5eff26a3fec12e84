#!/usr/bin/env bash
# Sets up .venv and runs the main job on the bundled inputs; prints where the outputs are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/audioavatar demo -o out/demo "$@"
