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
KIND_AUDIO, KIND_FRAME = 1, 2
FORMAT_JPEG = 1
AUDIO_HEADER = struct.Struct("<2sBBII")          # magic, version, kind, sample rate, sequence: 12 bytes
FRAME_HEADER = struct.Struct("<2sBBIdIBBH")      # magic, version, kind, index, pts, latency_us, flags, format, n: 24
MIN_RATE, MAX_RATE = 8000, 192000
FLAG_SPEAKING = 1


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


# Control messages: type -> {field: (python types, required)}
_NUMBER = (int, float)
CONTROL = {"hello": {"version": ((int,), True), "token": ((str,), False)},
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
    if msg["type"] == "marks" and len(msg["marks"]) > MAX_MARKS:
        raise ProtocolError(f"marks: at most {MAX_MARKS} marks in one message, got {len(msg['marks'])}")
    return msg
