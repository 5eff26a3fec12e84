"""The bundled speech (assets/speech.wav, espeak-ng) at 16 kHz, repeated to any length: the benches' input."""
from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def speech(seconds: float) -> np.ndarray:
    """[S] float32 in [-1, 1] at 16 kHz, S = seconds * 16000."""
    from engine.audio.features import load_audio
    one = load_audio(ROOT / "assets" / "speech.wav").numpy()
    return np.tile(one, int(np.ceil(seconds * 16000 / one.shape[0])))[: int(seconds * 16000)]
