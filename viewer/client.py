"""AvatarClient: the asyncio SDK a conversational agent uses to drive an `audioavatar serve` session.

    async with AvatarClient("http://127.0.0.1:8765/", on_frame=show) as avatar:   # the URL `serve` prints
        await avatar.speak(tts_chunks(), sample_rate=22050)   # async iterator of PCM chunks, as the TTS makes them
        await avatar.interrupt()                               # barge-in: the avatar stops talking within a frame

Frames come back through `on_frame(frame)` (a plain or async callable) as dicts from viewer.protocol.unpack_frame:
index, pts, latency_us, speaking, audio (16 kHz int16 echo), image (JPEG bytes). Wire format: docs/protocol.md.
The URL may be the page's, as `audioavatar serve` prints it (http://HOST:PORT/), or the websocket's
(ws://HOST:PORT/ws); `ws_url` maps one to the other. The server keeps at most welcome["max_audio_ahead_s"]
seconds of speech waiting to be rendered and answers the excess with an error (kept in `errors`).
`wav_chunks` turns a WAV byte stream (a TTS command's stdout) into PCM chunks as it arrives; see
viewer/examples/tts_agent.py.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import struct
from collections.abc import AsyncIterator, Callable

from urllib.parse import urlsplit, urlunsplit

import numpy as np
from websockets.asyncio.client import connect

from viewer.protocol import VERSION, ProtocolError, pack_audio, unpack_frame


def ws_url(url: str) -> str:
    """The session's websocket URL from the page's (http://HOST:PORT/ -> ws://HOST:PORT/ws; https -> wss) or
    from a websocket URL (kept; an empty path becomes /ws). A bare HOST:PORT is taken as http://HOST:PORT/."""
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ValueError(f"server URL: expected http://HOST:PORT/ (as `audioavatar serve` prints it) or "
                         f"ws://HOST:PORT/ws, got {url!r}")
    path = parts.path
    if scheme == parts.scheme.lower():          # already a websocket URL
        path = path or "/ws"
    elif not path.endswith("/ws"):              # the page's URL (maybe under a proxy's prefix): its /ws
        path = path.rstrip("/") + "/ws"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


class AvatarError(RuntimeError):
    """The server refused or closed the session; the message is the server's."""


class AvatarClient:
    def __init__(self, url: str, token: str | None = None, on_frame: Callable | None = None):
        self.url, self.token, self.on_frame = ws_url(url), token, on_frame
        self.welcome: dict | None = None
        self.errors: list[str] = []
        self.frames_received = 0
        self._ws = None
        self._reader: asyncio.Task | None = None
        self._replies: dict[str, asyncio.Future] = {}
        self._seq = 0

    async def __aenter__(self) -> "AvatarClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def connect(self) -> dict:
        """Open the session (hello -> welcome); returns the welcome message."""
        self._ws = await connect(self.url, max_size=None)
        hello = {"type": "hello", "version": VERSION}
        if self.token:
            hello["token"] = self.token
        await self._ws.send(json.dumps(hello))
        while True:                      # frames may only follow the welcome; errors come instead of it
            reply = json.loads(await self._ws.recv())
            if reply.get("type") == "welcome":
                self.welcome = reply
                break
            raise AvatarError(reply.get("message", f"unexpected reply {reply}"))
        self._reader = asyncio.create_task(self._read())
        return self.welcome

    async def speak(self, chunks: AsyncIterator, sample_rate: int = 16000, marks: list | None = None,
                    alphabet: str = "microsoft") -> int:
        """Send PCM chunks (int16 arrays/bytes, or float arrays in [-1, 1]) as they come, then end the utterance.
        marks: the TTS's timed visemes or phonemes [(start_s, end_s, symbol)] from the utterance's start, in
        `alphabet` (docs/protocol.md, `marks`); the mouth then follows them exactly. More can be sent while the
        audio streams with send_marks(). Returns the number of samples sent."""
        if marks:
            await self.send_marks(marks, alphabet)
        sent = 0
        async for chunk in chunks:
            sent += await self.send_audio(chunk, sample_rate)
        await self.end()
        return sent

    async def send_audio(self, chunk, sample_rate: int = 16000) -> int:
        """One chunk of speech (int16 array/bytes, or floats in [-1, 1]); returns its sample count."""
        pcm = np.frombuffer(chunk, dtype="<i2") if isinstance(chunk, (bytes, bytearray)) else np.asarray(chunk)
        if pcm.size == 0:
            return 0
        self._seq += 1
        await self._ws.send(pack_audio(pcm, sample_rate, self._seq))
        return int(pcm.size)

    async def end(self) -> None:
        """The utterance is over: the server flushes its last partial frame."""
        await self._ws.send(json.dumps({"type": "end"}))

    async def send_marks(self, marks: list, alphabet: str = "microsoft") -> None:
        """Timed visemes or phonemes of the utterance being spoken, or of the next one (docs/protocol.md)."""
        await self._ws.send(json.dumps({"type": "marks", "alphabet": alphabet,
                                        "marks": [[float(a), float(b), s] for a, b, s in marks]}))

    async def interrupt(self) -> int:
        """Barge-in; returns the index of the first frame after it."""
        return (await self._request({"type": "interrupt"}, "interrupted"))["next_index"]

    async def set_camera(self, yaw: float, pitch: float = 0.0, zoom: float = 1.0) -> None:
        await self._ws.send(json.dumps({"type": "camera", "yaw": yaw, "pitch": pitch, "zoom": zoom}))

    async def stats(self) -> dict:
        return await self._request({"type": "stats"}, "stats")

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _request(self, msg: dict, reply_type: str) -> dict:
        future = asyncio.get_running_loop().create_future()
        self._replies[reply_type] = future
        await self._ws.send(json.dumps(msg))
        return await asyncio.wait_for(future, 10.0)

    async def _read(self) -> None:
        async for message in self._ws:
            if isinstance(message, bytes):
                try:
                    frame = unpack_frame(message)
                except ProtocolError as e:
                    self.errors.append(str(e))
                    continue
                self.frames_received += 1
                if self.on_frame is not None:
                    result = self.on_frame(frame)
                    if inspect.isawaitable(result):
                        await result
                continue
            msg = json.loads(message)
            if msg.get("type") == "error":
                self.errors.append(msg.get("message", ""))
            future = self._replies.pop(msg.get("type"), None)
            if future is not None and not future.done():
                future.set_result(msg)


async def wav_chunks(stream: asyncio.StreamReader, chunk_ms: int = 40) -> AsyncIterator[np.ndarray]:
    """Parse a WAV byte stream as it arrives (e.g. `espeak-ng --stdout`) and yield mono int16 chunks.
    Sets `wav_chunks.sample_rate` once the header is read. ValueError when it is not 16-bit PCM WAV."""
    head = await stream.readexactly(12)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise ValueError("TTS output: not a WAV stream (no RIFF/WAVE header)")
    rate = channels = None
    while True:
        cid, size = struct.unpack("<4sI", await stream.readexactly(8))
        if cid == b"fmt ":
            fmt = await stream.readexactly(size)
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
            if tag != 1 or bits != 16:
                raise ValueError(f"TTS output: need 16-bit PCM WAV, got format {tag} with {bits} bits")
        elif cid == b"data":
            break
        else:
            await stream.readexactly(size)
    if rate is None:
        raise ValueError("TTS output: WAV data before its fmt chunk")
    wav_chunks.sample_rate = rate
    step = max(1, rate * chunk_ms // 1000) * channels * 2
    buf = b""
    while True:
        data = await stream.read(step)
        if not data:
            break
        buf += data
        whole = len(buf) // (2 * channels) * (2 * channels)
        if whole:
            pcm = np.frombuffer(buf[:whole], dtype="<i2").reshape(-1, channels).mean(1).astype(np.int16)
            buf = buf[whole:]
            yield pcm
