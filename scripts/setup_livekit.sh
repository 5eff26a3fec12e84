#!/usr/bin/env bash
# Creates .venv-livekit: a LiveKit avatar worker's environment with livekit-agents 1.8.9 and this repository's live
# client (viewer/client.py, viewer/livekit_avatar.py), for publishing a running `audioavatar serve` into a room.
# Separate from .venv for the same reason as .venv-pipecat: livekit-agents needs protobuf >= 5 and mediapipe
# 0.10.21 breaks under it (docs/agents.md). Pillow decodes the server's JPEG frames. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv-livekit/bin/python ]; then
  "$PY" -m venv .venv-livekit
fi
.venv-livekit/bin/python -m pip install --quiet --upgrade pip
.venv-livekit/bin/python -m pip install --quiet "livekit-agents==1.8.9" "websockets>=13.1" "Pillow>=11"
.venv-livekit/bin/python -m pip install --quiet --no-deps -e .
