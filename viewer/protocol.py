"""The wire format of docs/protocol.md (version 1): binary audio in, binary frames out, JSON control.

Everything that parses bytes from the network lives here and raises ProtocolError (a ValueError) with a
message fit to send back to the client. viewer/server.py and viewer/client.py both use it; the browser's
viewer/static/protocol.js implements the same layout.
"""
from __future__ import annotations

import json
import math
import struct

import numpy as np

MAGIC, VERSION = b"AA", 1
KIND_AUDIO, KIND_FRAME, KIND_MOTION = 1, 2, 3
FORMAT_JPEG = 1
AUDIO_HEADER = struct.Struct("<2sBBII")          # magic, version, kind, sample rate, sequence: 12 bytes
FRAME_HEADER = struct.Struct("<2sBBIdIBBH")      # magic, version, kind, index, pts, latency_us, flags, format, n: 24
# motion (client rendering): magic, version, kind, index, pts, latency_us, flags, audio samples n, K, B + 1 bone rows,
# translation scale (world units per 32767): 32 bytes; then n bytes of mu-law audio, int16 [K, 3] translation,
# int16 [B + 1, 4] bone quaternions (/ 32767) when FLAG_BONES, float16 [K, 10] deltas when FLAG_DELTAS
MOTION_HEADER = struct.Struct("<2sBBIdIBxHHHf")
MIN_RATE, MAX_RATE = 8000, 192000
FLAG_SPEAKING, FLAG_BONES, FLAG_DELTAS = 1, 2, 4
RENDER_MODES = ("server", "client")


class ProtocolError(ValueError):
    """A message that breaks docs/protocol.md; the text says what was wrong."""


def _check_header(magic: bytes, version: int, kind: int, want_kind: int) -> None:
    if magic != MAGIC:
        raise ProtocolError(f"binary message: magic must be b'AA', got {magic!r}")
    if version != VERSION:
        raise ProtocolError(f"binary message: protocol version {version}, this server speaks {VERSION}")
    if kind != want_kind:
        raise ProtocolError(f"binary message: kind {kind}, expected {want_kind}")


def pack_audio(samples: np.ndarray, sample_rate: int, seq: int = 0) -> bytes:
    """samples [n] int16 (or float in [-1, 1], converted) -> one audio message."""
    a = np.asarray(samples)
    if a.dtype != np.int16:
        a = (np.clip(a.astype(np.float64), -1.0, 1.0) * 32767.0).round().astype(np.int16)
    return AUDIO_HEADER.pack(MAGIC, VERSION, KIND_AUDIO, int(sample_rate), int(seq) & 0xFFFFFFFF) + \
        a.astype("<i2").tobytes()


def unpack_audio(data: bytes) -> tuple[int, int, np.ndarray]:
    """One audio message -> (sample_rate, seq, samples [n] int16)."""
    if len(data) < AUDIO_HEADER.size:
        raise ProtocolError(f"audio message: {len(data)} bytes is shorter than the {AUDIO_HEADER.size}-byte header")
    magic, version, kind, rate, seq = AUDIO_HEADER.unpack_from(data)
    _check_header(magic, version, kind, KIND_AUDIO)
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ProtocolError(f"audio message: sample rate {rate} outside {MIN_RATE}..{MAX_RATE}")
    body = len(data) - AUDIO_HEADER.size
    if body % 2:
        raise ProtocolError(f"audio message: {body} payload bytes is not a whole number of int16 samples")
    return rate, seq, np.frombuffer(data, dtype="<i2", offset=AUDIO_HEADER.size).astype(np.int16)


def pack_frame(index: int, pts: float, latency_us: int, speaking: bool, audio: np.ndarray, image: bytes) -> bytes:
    """audio [n] int16 at 16 kHz (the frame's 40 ms), image: encoded JPEG bytes -> one frame message."""
    a = np.asarray(audio, dtype="<i2")
    head = FRAME_HEADER.pack(MAGIC, VERSION, KIND_FRAME, index & 0xFFFFFFFF, float(pts),
                             max(0, min(int(latency_us), 0xFFFFFFFF)), FLAG_SPEAKING if speaking else 0,
                             FORMAT_JPEG, a.shape[0])
    return head + a.tobytes() + bytes(image)


def unpack_frame(data: bytes) -> dict:
    """One frame message -> {index, pts, latency_us, speaking, audio [n] int16, image bytes}."""
    if len(data) < FRAME_HEADER.size:
        raise ProtocolError(f"frame message: {len(data)} bytes is shorter than the {FRAME_HEADER.size}-byte header")
    magic, version, kind, index, pts, latency, flags, fmt, n = FRAME_HEADER.unpack_from(data)
    _check_header(magic, version, kind, KIND_FRAME)
    end = FRAME_HEADER.size + 2 * n
    if len(data) < end or fmt != FORMAT_JPEG:
        raise ProtocolError(f"frame message: truncated audio or unknown image format {fmt}")
    return {"index": index, "pts": pts, "latency_us": latency, "speaking": bool(flags & FLAG_SPEAKING),
            "audio": np.frombuffer(data, dtype="<i2", count=n, offset=FRAME_HEADER.size).astype(np.int16),
            "image": bytes(data[end:])}


# G.711 mu-law (ITU-T G.711, 1988: 8-bit companded PCM, computed on 14-bit samples as in the Sun reference
# implementation that Python's audioop follows; bias 0x21, clip 8159), used at 16 kHz for the audio of motion
# messages: half the bytes of PCM16, so a client-rendered session stays under 50 KB/s.
MULAW_BIAS, MULAW_CLIP = 0x21, 8159
_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def mulaw_encode(samples: np.ndarray) -> np.ndarray:
    """int16 [n] -> mu-law bytes uint8 [n] (bits inverted, as G.711 sends them)."""
    v = np.asarray(samples, dtype=np.int32) >> 2                       # 14 bits (floor, as the reference)
    mask = np.where(v < 0, 0x7F, 0xFF)
    v = np.minimum(np.abs(v), MULAW_CLIP) + MULAW_BIAS
    seg = (v[:, None] > _SEGMENT_ENDS[None]).sum(1)                   # 8 = beyond the last segment: full scale
    code = np.where(seg < 8, (np.minimum(seg, 7) << 4) | ((v >> (np.minimum(seg, 7) + 1)) & 0x0F), 0x7F)
    return (code ^ mask).astype(np.uint8)


def mulaw_decode(codes: np.ndarray) -> np.ndarray:
    """mu-law bytes uint8 [n] -> int16 [n]."""
    c = ~np.asarray(codes, dtype=np.int32) & 0xFF
    exponent, mantissa = (c >> 4) & 0x07, c & 0x0F
    mag = (((mantissa << 3) + 4 * MULAW_BIAS) << exponent) - 4 * MULAW_BIAS
    return np.where(c & 0x80, -mag, mag).astype(np.int16)


def pack_motion(index: int, pts: float, latency_us: int, speaking: bool, audio: np.ndarray, translation: np.ndarray,
                bones: np.ndarray | None = None, deltas: np.ndarray | None = None) -> bytes:
    """audio [n] int16 at 16 kHz (sent as mu-law; n = 0 for silence), translation [K, 3] world units (int16 with
    a per-message scale), bones [B + 1, 4] unit quaternions or None, deltas [K, 10] or None -> one motion message."""
    t = np.asarray(translation, dtype=np.float32)
    scale = float(np.abs(t).max()) if t.size else 0.0
    scale = scale if scale > 0 else 1.0
    flags = (FLAG_SPEAKING if speaking else 0) | (FLAG_BONES if bones is not None else 0) | \
        (FLAG_DELTAS if deltas is not None else 0)
    a = np.asarray(audio)
    n_bones = 0 if bones is None else len(bones)
    parts = [MOTION_HEADER.pack(MAGIC, VERSION, KIND_MOTION, index & 0xFFFFFFFF, float(pts),
                                max(0, min(int(latency_us), 0xFFFFFFFF)), flags, a.shape[0], t.shape[0], n_bones,
                                scale),
             mulaw_encode(a).tobytes(), np.rint(t / scale * 32767).astype("<i2").tobytes()]
    if bones is not None:
        parts.append(np.rint(np.clip(np.asarray(bones, np.float32), -1, 1) * 32767).astype("<i2").tobytes())
    if deltas is not None:
        parts.append(np.asarray(deltas, dtype="<f2").tobytes())
    return b"".join(parts)


def unpack_motion(data: bytes) -> dict:
    """One motion message -> {index, pts, latency_us, speaking, audio [n] int16, translation [K, 3] float32,
    bones [B + 1, 4] float32 or None, deltas [K, 10] float32 or None}."""
    if len(data) < MOTION_HEADER.size:
        raise ProtocolError(f"motion message: {len(data)} bytes is shorter than the {MOTION_HEADER.size}-byte header")
    magic, version, kind, index, pts, latency, flags, n, K, nb, scale = MOTION_HEADER.unpack_from(data)
    _check_header(magic, version, kind, KIND_MOTION)
    want = MOTION_HEADER.size + n + 6 * K + (8 * nb if flags & FLAG_BONES else 0) + \
        (20 * K if flags & FLAG_DELTAS else 0)
    if len(data) != want:
        raise ProtocolError(f"motion message: {len(data)} bytes, its header says {want}")
    at = MOTION_HEADER.size
    audio = mulaw_decode(np.frombuffer(data, np.uint8, n, at))
    at += n
    translation = np.frombuffer(data, "<i2", 3 * K, at).reshape(K, 3).astype(np.float32) * (scale / 32767)
    at += 6 * K
    bones = deltas = None
    if flags & FLAG_BONES:
        bones = np.frombuffer(data, "<i2", 4 * nb, at).reshape(nb, 4).astype(np.float32) / 32767
        at += 8 * nb
    if flags & FLAG_DELTAS:
        deltas = np.frombuffer(data, "<f2", 10 * K, at).reshape(K, 10).astype(np.float32)
    return {"index": index, "pts": pts, "latency_us": latency, "speaking": bool(flags & FLAG_SPEAKING),
            "audio": audio, "translation": translation, "bones": bones, "deltas": deltas}


# Control messages: type -> {field: (python types, required)}
_NUMBER = (int, float)
CONTROL = {"hello": {"version": ((int,), True), "token": ((str,), False), "render": ((str,), False)},
           "camera": {"yaw": (_NUMBER, True), "pitch": (_NUMBER, False), "zoom": (_NUMBER, False)},
           "end": {}, "interrupt": {}, "stats": {}, "gesture": {"text": ((str,), True)},
           "marks": {"alphabet": ((str,), True), "marks": ((list,), True)}}
MAX_MARKS = 4096                  # marks in one `marks` message (each is checked by AvatarEngine.push_marks)
MAX_INT = 2 ** 53                 # any integer field beyond +-this is refused (and never printed in full)
MAX_TEXT = {"token": 1024, "text": 200}     # characters
ZOOM_RANGE = (0.1, 10.0)          # camera zoom: 1 = the photo's framing, > 1 closer
MAX_ANGLE = 1e6                   # degrees; yaw wraps, pitch is clamped to +-80 by the engine


def short(value, limit: int = 40) -> str:
    """repr(value) cut to `limit` characters, safe for any value a client sends (huge ints included)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        return "a huge integer"
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def parse_control(text: str) -> dict:
    """A JSON control message -> the dict, checked against CONTROL (types, required fields, finite numbers in
    range, bounded strings). Any other problem is a ProtocolError too: nothing a client sends raises anything
    else from here."""
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError) as e:   # JSONDecodeError, and ints beyond Python's digit limit
        raise ProtocolError(f"control message: not valid JSON ({str(e)[:80]})") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError("control message: expected a JSON object with a string 'type'")
    spec = CONTROL.get(msg["type"])
    if spec is None:
        raise ProtocolError(f"control message: unknown type {short(msg['type'])}; known: {sorted(CONTROL)}")
    for field, (types, required) in spec.items():
        if field not in msg:
            if required:
                raise ProtocolError(f"{msg['type']}: missing field {field!r}")
            continue
        value = msg[field]
        if isinstance(value, bool) or not isinstance(value, types):
            raise ProtocolError(f"{msg['type']}: field {field!r} has the wrong type ({type(value).__name__})")
        if isinstance(value, int) and abs(value) > MAX_INT:
            raise ProtocolError(f"{msg['type']}: field {field!r} is out of range (|x| <= 2**53)")
        if isinstance(value, float) and not math.isfinite(value):
            raise ProtocolError(f"{msg['type']}: field {field!r} must be finite")
        if isinstance(value, str) and len(value) > MAX_TEXT.get(field, 1024):
            raise ProtocolError(f"{msg['type']}: field {field!r} is longer than {MAX_TEXT.get(field, 1024)} "
                                "characters")
    if msg["type"] == "camera":
        zoom = msg.get("zoom", 1.0)
        if not ZOOM_RANGE[0] <= zoom <= ZOOM_RANGE[1]:
            raise ProtocolError(f"camera: zoom must lie in [{ZOOM_RANGE[0]}, {ZOOM_RANGE[1]}], got {short(zoom)}")
        if abs(msg["yaw"]) > MAX_ANGLE or abs(msg.get("pitch", 0.0)) > MAX_ANGLE:
            raise ProtocolError("camera: yaw and pitch must lie within +-1e6 degrees")
    if msg["type"] == "hello" and msg.get("render", "server") not in RENDER_MODES:
        raise ProtocolError(f"hello: render must be one of {list(RENDER_MODES)}, got {short(msg['render'])}")
    if msg["type"] == "marks" and len(msg["marks"]) > MAX_MARKS:
        raise ProtocolError(f"marks: at most {MAX_MARKS} marks in one message, got {len(msg['marks'])}")
    return msg
