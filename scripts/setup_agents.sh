#!/usr/bin/env bash
# Creates the agent-framework environments: .venv-pipecat (pipecat-ai 1.14.0) and .venv-livekit (livekit-agents
# 1.8.9), each with this repository's live client (viewer/client.py and viewer/pipecat_service.py or
# viewer/livekit_avatar.py), for driving a running `audioavatar serve` from an agent. Usage:
# scripts/setup_agents.sh [pipecat|livekit|all] (default all). Safe to re-run.
# They are separate from .venv because both frameworks need protobuf >= 5, and mediapipe 0.10.21 (the engine's
# landmarks) fails to parse its graphs under protobuf 5 (docs/agents.md). The repository goes in with --no-deps:
# the client needs only numpy, websockets and Pillow.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}

make_env() {   # make_env DIR PACKAGE...
  local dir=$1
  shift
  [ -x "$dir/bin/python" ] || "$PY" -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet --upgrade pip
  "$dir/bin/python" -m pip install --quiet "$@" "websockets>=13.1" "Pillow>=11"
  "$dir/bin/python" -m pip install --quiet --no-deps -e .
}

which=${1:-all}
case "$which" in
  pipecat|livekit|all) ;;
  *) echo "usage: scripts/setup_agents.sh [pipecat|livekit|all]" >&2; exit 2 ;;
esac
if [ "$which" != livekit ]; then make_env .venv-pipecat "pipecat-ai==1.14.0"; fi
if [ "$which" != pipecat ]; then make_env .venv-livekit "livekit-agents==1.8.9"; fi
