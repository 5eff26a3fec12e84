"""Phoneme-labelled synthetic speech: libespeak-ng (through ctypes) speaks a text and reports every phoneme with
its position in the audio, so the speech comes with an exact phoneme timeline (issue 19).

    speech = synthesize("Pop a big map", voice="en-us", rate=150, pitch=50)
    speech.wave          # [S] float32 in [-1, 1] at speech.sample_rate (espeak's own: 22050 Hz)
    speech.phonemes      # [(start_s, end_s, mnemonic), ...] in order, espeak's ASCII phoneme names
    phoneme_class("m")   # "bilabial" (or "open", "rounded", "spread", None): the classes bench/phonemes.py uses

The library is Debian's libespeak-ng.so.1 (`apt install espeak-ng`); it keeps one global state, so calls are
serialised by a lock and it is initialised once per process (synchronous output, phoneme events on).

Phoneme classes, from what espeak-ng 1.51 really reports for en-us / en-gb (printed for the sentences of
bench/phonemes.py; `python -m distill.phonemes "text"` prints them):
  bilabial  p b m                 (lips closed: the bar's /p b m/)
  open      a a# aI aU A: A@ 0 V  (jaw open: "cat", the reduced a, "time", "now", "father", "star", "hot"
                                   (en-gb), "cut"; 3:/@ are left out: mid, not open)
  rounded   u: U O: oU o O@ OI w  ("blue", "book", "law", "go", en-gb "go" onset, "more", "boy", "we";
                                   aU is open, not rounded: it starts open)
  spread    i: i I e eI E         ("see", "happy" final, "bit", en-gb "day" onset, "day", "bed")
Stress marks (' ,) and pauses (_ _: _!) come as their own events on some versions; they are kept in
`Speech.phonemes` (a pause is a real stretch of audio) but belong to no class.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from dataclasses import dataclass

import numpy as np

# ---------------------------------------------------------------------------------------------- the C API
# From espeak-ng's public header src/include/espeak-ng/speak_lib.h (ESPEAK_API_REVISION 12, the one 1.51
# ships; read in the copy vendored by alibaba/MNN under apps/Android/Mnn3dAvatar/.../espeak-ng/speak_lib.h):
#   typedef struct { espeak_EVENT_TYPE type; unsigned int unique_identifier; int text_position; int length;
#                    int audio_position /* ms */; int sample; void *user_data;
#                    union { int number; const char *name; char string[8]; } id; } espeak_EVENT;
#   int espeak_Initialize(espeak_AUDIO_OUTPUT, int buflength, const char *path, int options)  -> sample rate
#   typedef int (t_espeak_callback)(short *wav, int numsamples, espeak_EVENT *events)  events end at type 0
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
EVENT_LIST_TERMINATED, EVENT_WORD, EVENT_SENTENCE, EVENT_END, EVENT_MSG_TERMINATED, EVENT_PHONEME = 0, 1, 2, 5, 6, 7
RATE, PITCH = 1, 3                      # espeak_PARAMETER
CHARS_UTF8 = 1
EE_OK, EE_NOT_FOUND = 0, 2
RATE_RANGE, PITCH_RANGE = (80, 450), (0, 100)


class _Id(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Voice(ctypes.Structure):      # espeak_VOICE, same header: languages = (priority byte, name, 0)..., 0
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_void_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _Id)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
_LOCK = threading.Lock()
_STATE: dict = {}                       # lib, rate, callback (kept alive), and the collecting buffers

# ------------------------------------------------------------------------------------------ phoneme classes
BILABIAL = ("p", "b", "m")
OPEN = ("a", "a#", "aI", "aU", "A:", "A@", "0", "V")
ROUNDED = ("u:", "U", "O:", "oU", "o", "O@", "OI", "w")
SPREAD = ("i:", "i", "I", "e", "eI", "E")
CLASSES = {"bilabial": BILABIAL, "open": OPEN, "rounded": ROUNDED, "spread": SPREAD}
_CLASS_OF = {p: name for name, members in CLASSES.items() for p in members}


def phoneme_class(mnemonic: str) -> str | None:
    """The bench class of an espeak phoneme mnemonic ("bilabial", "open", "rounded", "spread"), or None."""
    return _CLASS_OF.get(mnemonic)


@dataclass
class Speech:
    wave: np.ndarray                            # [S] float32 in [-1, 1]
    sample_rate: int                            # Hz (espeak's: 22050)
    phonemes: list[tuple[float, float, str]]    # (start_s, end_s, mnemonic), in order, inside [0, S / rate]
    text: str = ""
    voice: str = ""
    rate: int = 0
    pitch: int = 0

    @property
    def seconds(self) -> float:
        return self.wave.shape[0] / self.sample_rate


def _library():
    """The initialised library (once per process): RuntimeError naming the package when it is missing."""
    if "lib" in _STATE:
        return _STATE["lib"]
    name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError as e:
        raise RuntimeError(f"libespeak-ng not found ({e}); install it with `apt install espeak-ng`") from e
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p]
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None, INITIALIZE_PHONEME_EVENTS)
    if rate <= 0:
        raise RuntimeError(f"espeak_Initialize failed ({rate}): is espeak-ng-data installed? "
                           "(`apt install espeak-ng`)")

    def collect(wav, n, events) -> int:
        if wav and n > 0:
            _STATE["chunks"].append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events and events[i].type != EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type == EVENT_PHONEME:
                _STATE["events"].append((e.audio_position, e.id.string.decode("utf-8", "replace")))
            i += 1
        return 0

    _STATE["callback"] = _CALLBACK(collect)
    lib.espeak_SetSynthCallback(_STATE["callback"])
    _STATE.update(lib=lib, rate=int(rate))
    return lib


def available() -> bool:
    """True when libespeak-ng can be loaded (tests that speak skip otherwise)."""
    try:
        _library()
        return True
    except RuntimeError:
        return False


def _by_language(lib, voice: str) -> str | None:
    """The voice file for a language code such as "en-gb" (whose voice is the file gmw/en, so that
    espeak_SetVoiceByName does not find it by that name): the eSpeak (not mbrola) voice listing the language
    with the best priority, its "+variant" kept. None when no voice lists it."""
    base, plus, variant = voice.partition("+")
    best = None
    voices = lib.espeak_ListVoices(None)
    i = 0
    while voices[i]:
        v = voices[i].contents
        ident = (v.identifier or b"").decode()
        raw = ctypes.string_at(v.languages, 256) if v.languages else b"\0"
        j = 0
        while j < len(raw) and raw[j] != 0:
            priority, end = raw[j], raw.index(b"\0", j + 1)
            if raw[j + 1:end].decode().lower() == base.lower() and not ident.startswith("mb/"):
                best = min(best or (priority, ident), (priority, ident))
            j = end + 1
        i += 1
    return None if best is None else best[1] + plus + variant


def _check_int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ValueError(f"{name}: expected an int in {lo}..{hi}, got {value!r}")
    return int(value)


def synthesize(text: str, voice: str = "en-us", rate: int = 150, pitch: int = 50) -> Speech:
    """Speak text with an espeak-ng voice ("en-us", "en-gb", variants as "en-us+f3"), rate in words per minute
    (80..450), base pitch 0..100. Returns the wave [S] and the phoneme timeline: each phoneme runs from its
    event's audio position to the next event's (the last to the end of the audio), clipped to the audio.
    ValueError for empty text, an unknown voice (named) or a rate/pitch out of range."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text: expected a non-empty string, got {text!r}")
    if not isinstance(voice, str) or not voice:
        raise ValueError(f"voice: expected an espeak voice name such as 'en-us', got {voice!r}")
    rate, pitch = _check_int("rate", rate, *RATE_RANGE), _check_int("pitch", pitch, *PITCH_RANGE)
    with _LOCK:
        lib = _library()
        err = lib.espeak_SetVoiceByName(voice.encode())
        if err != EE_OK and (ident := _by_language(lib, voice)) is not None:
            err = lib.espeak_SetVoiceByName(ident.encode())
        if err != EE_OK:
            raise ValueError(f"voice: espeak-ng has no voice {voice!r} (espeak_SetVoiceByName returned {err}); "
                             "list them with `espeak-ng --voices`")
        lib.espeak_SetParameter(RATE, rate, 0)
        lib.espeak_SetParameter(PITCH, pitch, 0)
        _STATE["chunks"], _STATE["events"] = [], []
        data = text.encode("utf-8") + b"\0"
        err = lib.espeak_Synth(data, len(data), 0, 1, 0, CHARS_UTF8, None, None)
        if err != EE_OK:
            raise RuntimeError(f"espeak_Synth failed with error {err} for text {text!r}")
        chunks, events, sr = _STATE.pop("chunks"), _STATE.pop("events"), _STATE["rate"]
    wave = (np.concatenate(chunks) if chunks else np.zeros(0, np.int16)).astype(np.float32) / 32768.0
    dur = wave.shape[0] / sr
    starts = [min(ms / 1000.0, dur) for ms, _ in events]
    phonemes = [(s, starts[i + 1] if i + 1 < len(starts) else dur, name)
                for i, (s, (_, name)) in enumerate(zip(starts, events))]
    return Speech(wave, sr, phonemes, text, voice, rate, pitch)


def main(argv: list[str]) -> None:
    """Print the phoneme events of the texts given (for checking the classes)."""
    for text in argv or ["Pop a big map, mom.", "Blue moon, we go now; see the big green tree."]:
        for voice in ("en-us", "en-gb"):
            s = synthesize(text, voice)
            print(f"{voice} {s.seconds:.2f}s {text!r}")
            print("   " + " ".join(f"{p}@{a:.3f}[{phoneme_class(p) or '-'}]" for a, _, p in s.phonemes))


if __name__ == "__main__":
    main(sys.argv[1:])
