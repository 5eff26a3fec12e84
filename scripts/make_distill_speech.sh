#!/usr/bin/env bash
# How assets/speech/ was made: the bundled distillation speech corpus (distill/data.py reads it).
# Debian's espeak-ng (apt install espeak-ng) speaks our own English sentences in its built-in "gmw" voices (the
# mbrola voices it lists need mbrola, which Debian does not ship: this script checks every voice first).
#   train:   10 sentences x 6 voices (en-us+f1 (female), en-gb, en-gb-scotland, en-us+m3, en-gb-x-gbclan,
#            en-us-nyc+f5 (female), each at its own speed). Three voices were too few: the distilled jaw
#            followed the teacher's at r 0.98 on trained voices but 0.85 on held-out ones (docs/distillation.md)
#   heldout:  4 other sentences x 2 other voices (en-029, en-gb-x-rp+f4 (female)): no held-out sentence or voice
#            is trained. Female variants f1/f4 (no breath noise): the breathy f2/f3 cost 20% more FLAC bytes.
# Each clip: 16 kHz mono 16-bit FLAC (engine.audio.features.load_audio resamples espeak's 22050 Hz), peak at -1 dBFS.
# assets/speech/corpus.json lists id, file (relative to assets/speech), split, voice, text, seconds.
# The output is kept in the repo so the pipeline runs without espeak-ng. Usage: scripts/make_distill_speech.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v espeak-ng >/dev/null; then
  echo "make_distill_speech: espeak-ng not found (apt install espeak-ng)" >&2
  exit 1
fi
PY=${PYTHON:-.venv/bin/python}
"$PY" - <<'EOF'
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from engine.audio.features import SAMPLE_RATE, load_audio

ROOT = Path("assets/speech")
PEAK = 10 ** (-1 / 20)                 # -1 dBFS
# (voice as espeak-ng's -v takes it, words per minute)
TRAIN_VOICES = [("en-us+f1", 175), ("en-gb", 175), ("en-gb-scotland", 170), ("en-us+m3", 165),
                ("en-gb-x-gbclan", 180), ("en-us-nyc+f5", 175)]
HELDOUT_VOICES = [("en-029", 175), ("en-gb-x-rp+f4", 170)]
# varied phonetics: open vowels (a, aw, ah), bilabials (p, b, m) that close the lips, labiodentals (f, v),
# rounded vowels (oo, oh), sibilants, and pauses (commas, full stops) where the mouth rests
TRAIN_TEXT = [
    "Bob, maybe a warm bowl of soup is better.",
    "Far away, the farmer calls: are the barns open?",
    "Please pass the paper map. Mum packed it.",
    "I saw a tall hawk soar above the autumn lawn.",
    "Why move the blue boat over the moonlit pool?",
    "Five vivid violets, and a few fine feathers.",
    "The cheap kitchen chair, she said, is shaky.",
    "Oh no! The old oak broke, so we rolled home.",
    "Thin threads, three thousand, wove this thick cloth.",
    "Yes, we will see the sea in a week, I think.",
]
HELDOUT_TEXT = [
    "Mama made a mango pie, but Papa ate half.",
    "Look, the big brown dog is barking at the gate.",
    "Wait a moment. Does the last train leave at nine?",
    "Every morning, Emma opens the window wide.",
]
PAD = 0.2                               # seconds of silence kept before and after the speech: 5 frames of rest
QUIET = 10 ** (-40 / 20)                # below -40 dB of the peak counts as silence when trimming


def speak(text: str, voice: str, wpm: int, tmp: Path) -> np.ndarray:
    wav = tmp / "tts.wav"
    run = subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(wav), text],
                         capture_output=True, text=True)
    if run.returncode != 0 or not wav.is_file() or wav.stat().st_size < 1000:
        raise SystemExit(f"make_distill_speech: espeak-ng voice {voice!r} failed: {run.stderr.strip()}")
    audio = load_audio(wav).numpy().astype(np.float64)        # mono [S] at 16 kHz
    wav.unlink()
    loud = np.flatnonzero(np.abs(audio) > QUIET * np.abs(audio).max())
    pad = np.zeros(round(PAD * SAMPLE_RATE))
    audio = np.concatenate([pad, audio[loud[0]: loud[-1] + 1], pad])   # espeak's own tail silence varies by voice
    return audio * (PEAK / np.abs(audio).max())


def main() -> None:
    for split in ("train", "heldout"):
        shutil.rmtree(ROOT / split, ignore_errors=True)
        (ROOT / split).mkdir(parents=True)
    clips = []
    with tempfile.TemporaryDirectory() as tmp:
        for split, texts, voices in (("train", TRAIN_TEXT, TRAIN_VOICES), ("heldout", HELDOUT_TEXT, HELDOUT_VOICES)):
            for voice, wpm in voices:
                for i, text in enumerate(texts):
                    audio = speak(text, voice, wpm, Path(tmp))
                    cid = f"{split}-{i:02d}-{voice.replace('+', '_')}"
                    rel = f"{split}/{cid}.flac"
                    sf.write(str(ROOT / rel), audio.astype(np.float32), SAMPLE_RATE, subtype="PCM_16",
                             compression_level=1.0)
                    clips.append({"id": cid, "file": rel, "split": split, "voice": voice, "text": text,
                                  "seconds": round(len(audio) / SAMPLE_RATE, 4)})
                    print(f"{cid}: {clips[-1]['seconds']:.2f} s")
    (ROOT / "corpus.json").write_text(json.dumps({"sample_rate": SAMPLE_RATE, "clips": clips}, indent=1) + "\n")
    total = sum(c["seconds"] for c in clips)
    size = sum(p.stat().st_size for p in ROOT.rglob("*.flac"))
    print(f"{len(clips)} clips, {total:.1f} s, {size / 1e6:.2f} MB -> {ROOT}/corpus.json")


main()
EOF
