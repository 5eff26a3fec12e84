#!/usr/bin/env bash
# Creates .venv-pipecat: an agent's environment with pipecat-ai 1.14.0 and this repository's live client
# (viewer/client.py, viewer/pipecat_service.py), for driving a running `audioavatar serve` from a Pipecat pipeline.
# It is separate from .venv because pipecat-ai needs protobuf >= 5.29 and mediapipe 0.10.21 (the engine's face
# landmarks) fails to parse its graphs under protobuf 5 (docs/agents.md). The repository goes in with --no-deps:
# the client needs only numpy and websockets, which pipecat-ai brings. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv-pipecat/bin/python ]; then
  "$PY" -m venv .venv-pipecat
fi
.venv-pipecat/bin/python -m pip install --quiet --upgrade pip
.venv-pipecat/bin/python -m pip install --quiet "pipecat-ai==1.14.0" "websockets>=13.1"
.venv-pipecat/bin/python -m pip install --quiet --no-deps -e .
