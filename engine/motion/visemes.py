"""Visemes: the mouth shapes speech needs beyond loudness, as per-frame weights [T, V] over VISEMES (issue 19).

    VISEMES = neutral, closed (p b m), labiodental (f v), rounded (u o w, sh), spread (i e), open (a)

Where the weights come from:
- **marks** (`viseme_of`, `marks_to_weights`): timed phonemes or visemes from a synthesiser that knows its text:
  espeak-ng mnemonics (distill/phonemes.py), ARPAbet (CMU dict, pocketsphinx), Microsoft's 22 viseme ids
  (SAPI/Azure `VisemeReceived`: 0 silence .. 21 p b m) or Amazon Polly's viseme letters. Each mark covers
  [start_s, end_s) of the audio; a frame's weights are how much of its 40 ms each viseme covers.
- **audio alone** (`VisemeStream`): the distilled viseme model (an engine.audio.encoder.AudioEncoder whose
  outputs are viseme logits, trained on espeak-ng's exact phoneme timelines by distill/visemes.py), causal,
  so a frame needs no audio after it. It lives in the learned model folder as `visemes/`.

engine/motion/articulate.py turns the weights into lip motion on top of any motion source.

A stop (p b) is marked at its release by espeak-ng and by ARPAbet aligners, while the lips are shut during the
silent closure before it: `marks_to_weights` starts a stop's closed mark STOP_LEAD_S earlier (a nasal m is shut
throughout and starts closing just before its murmur).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from engine.audio.encoder import AudioEncoder
from engine.pretrained import shared_model

VISEMES = ("neutral", "closed", "labiodental", "rounded", "spread", "open")
NEUTRAL, CLOSED, LABIODENTAL, ROUNDED, SPREAD, OPEN = range(len(VISEMES))
FPS = 25
STOP_LEAD_S = 0.06    # a stop's (p b) closed mark starts this much before its time (the silent closure) ...
NASAL_LEAD_S = 0.02   # ... an m's a little (the lips meet as its murmur starts) ...
MIXED_LEAD_S = 0.04   # ... and a viseme id that does not say which (microsoft 21, polly p) in between
MIN_CLOSED_S = 0.05   # and lasts at least this long (a stop's release is a point in time in some mark sets)

# espeak-ng 1.51's English phoneme mnemonics (what `python -m distill.phonemes TEXT` prints). English sh/ch/j
# and r are said with protruded lips, so they round.
ESPEAK = {
    **dict.fromkeys(("p", "b", "m"), CLOSED),
    **dict.fromkeys(("f", "v"), LABIODENTAL),
    **dict.fromkeys(("u:", "U", "O:", "oU", "o", "O@", "OI", "w", "U@", "o@", "S", "Z", "tS", "dZ", "r", "r-"),
                    ROUNDED),
    **dict.fromkeys(("i:", "i", "I", "e", "eI", "E", "I2", "i@", "j", "e@"), SPREAD),
    **dict.fromkeys(("a", "a#", "aI", "aU", "A:", "A@", "0", "V", "aI@", "aU@"), OPEN),
}
# ARPAbet (CMU pronouncing dictionary; pocketsphinx's phone set), stress digits stripped.
ARPABET = {
    **dict.fromkeys(("P", "B", "M"), CLOSED),
    **dict.fromkeys(("F", "V"), LABIODENTAL),
    **dict.fromkeys(("UW", "UH", "OW", "AO", "OY", "W", "SH", "ZH", "CH", "JH", "R", "ER"), ROUNDED),
    **dict.fromkeys(("IY", "IH", "EY", "EH", "Y"), SPREAD),
    **dict.fromkeys(("AA", "AE", "AH", "AW", "AY"), OPEN),
}
# Microsoft's viseme ids (SAPI 5 SPVISEMES, the set Azure's VisemeReceived reports for en-US; learn.microsoft.com
# "SPVISEMES"): 0 silence, 1 ae ax ah, 2 aa, 3 ao, 4 ey eh uh, 5 er, 6 y iy ih ix, 7 w uw, 8 ow, 9 aw, 10 oy,
# 11 ay, 12 h, 13 r, 14 l, 15 s z, 16 sh ch jh zh, 17 th dh, 18 f v, 19 d t n, 20 k g ng, 21 p b m.
MICROSOFT = {21: CLOSED, 18: LABIODENTAL, 3: ROUNDED, 7: ROUNDED, 8: ROUNDED, 10: ROUNDED, 13: ROUNDED,
             16: ROUNDED, 5: ROUNDED, 4: SPREAD, 6: SPREAD, 1: OPEN, 2: OPEN, 9: OPEN, 11: OPEN}
# Amazon Polly's viseme letters (docs.aws.amazon.com/polly, "Phoneme and Viseme Tables", en-US): p = b m p,
# f = f v, u = u w, o / O = the o vowels, S = sh ch j zh, r = r, i = i j, e / E = the e vowels, a = the a vowels.
POLLY = {"p": CLOSED, "f": LABIODENTAL, "u": ROUNDED, "o": ROUNDED, "O": ROUNDED, "S": ROUNDED, "r": ROUNDED,
         "i": SPREAD, "e": SPREAD, "E": SPREAD, "a": OPEN}
ALPHABETS = ("espeak", "arpabet", "microsoft", "polly", "viseme")


def viseme_of(symbol, alphabet: str) -> int:
    """The viseme index of one mark. alphabet: "espeak", "arpabet", "microsoft" (an int id 0..21), "polly"
    or "viseme" (one of VISEMES by name). Symbols outside a set's lip classes are neutral; a microsoft id
    outside 0..21 or an unknown viseme name is a ValueError."""
    if alphabet == "espeak":
        return ESPEAK.get(str(symbol).strip("',"), NEUTRAL)
    if alphabet == "arpabet":
        return ARPABET.get(str(symbol).upper().rstrip("012"), NEUTRAL)
    if alphabet == "microsoft":
        if isinstance(symbol, bool) or not isinstance(symbol, int) or not 0 <= symbol <= 21:
            raise ValueError(f"microsoft viseme id: expected an integer 0..21, got {symbol!r}")
        return MICROSOFT.get(symbol, NEUTRAL)
    if alphabet == "polly":
        return POLLY.get(str(symbol), NEUTRAL)
    if alphabet == "viseme":
        if symbol not in VISEMES:
            raise ValueError(f"viseme: expected one of {VISEMES}, got {symbol!r}")
        return VISEMES.index(symbol)
    raise ValueError(f"alphabet: expected one of {ALPHABETS}, got {alphabet!r}")


def _lead(symbol, alphabet: str) -> float:
    """How long before its mark a closed viseme shuts the lips (the module docstring)."""
    if alphabet in ("microsoft", "polly", "viseme"):
        return MIXED_LEAD_S
    return STOP_LEAD_S if str(symbol).strip("',").upper().rstrip("012") in ("P", "B") else NASAL_LEAD_S


def marks_to_weights(marks, n_frames: int, alphabet: str, offset_s: float = 0.0) -> Tensor:
    """marks [(start_s, end_s, symbol)] in order (times on the audio's clock; offset_s is subtracted) ->
    weights [n_frames, V]: frame i covers [i/25, (i+1)/25) s, each row sums to 1 (uncovered time is neutral).
    Closed marks start early (_lead) and last at least MIN_CLOSED_S, and win where they overlap another mark."""
    if n_frames < 0:
        raise ValueError(f"n_frames: expected >= 0, got {n_frames}")
    cover = torch.zeros(n_frames, len(VISEMES), dtype=torch.float64)
    edges = torch.arange(n_frames + 1, dtype=torch.float64) / FPS
    closed = torch.zeros(n_frames, dtype=torch.float64)
    for k, mark in enumerate(marks):
        try:
            start, end, symbol = mark
            start, end = float(start) - offset_s, float(end) - offset_s
        except (TypeError, ValueError) as e:
            raise ValueError(f"marks[{k}]: expected (start_s, end_s, symbol), got {mark!r}") from e
        if not (math.isfinite(start) and math.isfinite(end)) or end < start:
            raise ValueError(f"marks[{k}]: expected finite times with end >= start, got {start!r}, {end!r}")
        v = viseme_of(symbol, alphabet)
        if v == CLOSED:
            start, end = start - _lead(symbol, alphabet), max(end, start + MIN_CLOSED_S)
        overlap = (torch.minimum(edges[1:], torch.tensor(end)) - torch.maximum(edges[:-1], torch.tensor(start)))
        overlap = overlap.clamp(min=0) * FPS
        if v == CLOSED:
            closed = torch.maximum(closed, overlap)
        else:
            cover[:, v] += overlap
    rest = (1 - closed).clamp(min=0)
    speech = cover.sum(1).clamp(min=1.0)                     # overlapping marks share what is not closed
    cover = cover / speech[:, None] * rest[:, None]
    cover[:, CLOSED] = closed.clamp(max=1)
    cover[:, NEUTRAL] += (1 - cover.sum(1)).clamp(min=0)
    return cover.float()


def load_viseme_model(model_dir: str | Path) -> AudioEncoder | None:
    """The viseme model of a learned model folder (MODEL_DIR/visemes), or None when the folder has none."""
    root = Path(model_dir) / "visemes"
    if not root.is_dir():
        return None
    model = shared_model(AudioEncoder, root)
    if model.config.dim != len(VISEMES):
        raise ValueError(f"{root}: a viseme model has {len(VISEMES)} outputs ({', '.join(VISEMES)}), "
                         f"this one {model.config.dim}")
    return model.eval()


class VisemeStream:
    """Live viseme weights from audio alone: push(mel [t, n_mels]) -> [t, V] (softmax of the model's logits),
    causal and chunk-size independent (engine.audio.encoder.AudioEncoderStream)."""

    def __init__(self, model: AudioEncoder):
        self.model = model
        self.stream = model.stream()

    def reset(self) -> None:
        self.stream.reset()

    def push(self, mel: Tensor) -> Tensor:
        return self.weights(self.stream.push(mel))

    @staticmethod
    def weights(logits: Tensor) -> Tensor:
        """The model's logits [t, V] -> viseme weights [t, V]."""
        return torch.softmax(logits, dim=-1)
