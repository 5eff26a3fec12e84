#!/usr/bin/env bash
# Creates .venv (Python 3.11) and installs the project into it; safe to re-run. Usage: scripts/setup.sh [extras]
# torch is pinned to 2.13.0 in pyproject.toml: on these machines that resolves to a local CPU wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
extras=${1:-}
.venv/bin/python -m pip install --quiet -e ".${extras:+[$extras]}"
# mediapipe 0.10.21 ships its face/hand/pose/segmentation models (later releases do not); --no-deps skips its
# declared jax/jaxlib, which the vision solutions never import. Its real imports are in pyproject.toml.
.venv/bin/python -m pip install --quiet --no-deps mediapipe==0.10.21
# pypiqe (no-reference PIQE, engine/evaluation) declares opencv-python; opencv-python-headless provides its cv2.
.venv/bin/python -m pip install --quiet --no-deps pypiqe==1.2
# Test-only system tools from Debian, when this machine can install them (root + apt): headless Chromium and
# chromedriver for the browser-viewer test, espeak-ng for the TTS example, haproxy for the balancer test
# (deploy/haproxy.cfg). Without them those tests skip.
if [ "$extras" = "test" ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  missing=""
  command -v chromium >/dev/null || missing="$missing chromium"
  command -v chromedriver >/dev/null || missing="$missing chromium-driver"
  command -v espeak-ng >/dev/null || missing="$missing espeak-ng"
  command -v haproxy >/dev/null || missing="$missing haproxy"
  if [ -n "$missing" ]; then
    echo "setup: installing$missing (apt)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing; } \
      >/dev/null 2>&1 || echo "setup: could not install$missing; the tests that need them will skip"
  fi
fi
# The Pipecat and LiveKit environments of tests/test_pipecat.py and tests/test_livekit.py (scripts/setup_agents.sh:
# those frameworks need protobuf 5, which the engine's mediapipe cannot share).
if [ "$extras" = "test" ]; then
  bash scripts/setup_agents.sh all || echo "setup: could not make .venv-pipecat/.venv-livekit; their tests will skip"
fi
# npm packages of the third-party web-viewer test (tests/test_web_viewers.py: Spark, mkkellogg's viewer, three),
# pinned in tests/web_viewers/package-lock.json; reinstalled only when the lock is newer. Without npm it skips.
if [ "$extras" = "test" ] && command -v npm >/dev/null \
    && [ tests/web_viewers/package-lock.json -nt tests/web_viewers/node_modules/.package-lock.json ]; then
  echo "setup: installing the web viewers of tests/web_viewers (npm ci)"
  npm ci --prefix tests/web_viewers --no-audit --no-fund >/dev/null 2>&1 \
    || echo "setup: npm ci in tests/web_viewers failed; tests/test_web_viewers.py will skip"
fi
