#!/usr/bin/env bash
# How assets/speech.wav was made: Debian's espeak-ng (apt install espeak-ng), English voice, 22050 Hz mono.
# The output is kept in the repo so the demo runs without espeak-ng.
set -euo pipefail
cd "$(dirname "$0")/.."
espeak-ng -v en-us -s 150 -w assets/speech.wav \
  "Hello! I am an avatar made from a single photo. I listen to speech, and my lips, head and eyes move with it. \
You can orbit around me while I talk."
