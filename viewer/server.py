"""`audioavatar serve`: the live websocket server (docs/protocol.md) and the browser viewer's static files.

One AvatarEngine per session, all sharing one loaded Avatar. Per session, three asyncio tasks:
    receive  websocket -> audio chunks into the engine (push_audio), control messages (camera, end,
             interrupt, stats)
    produce  engine.next_frame() + JPEG encoding in a worker thread -> a small send queue. With no speech
             queued it pushes 40 ms of silence whenever the session's clock falls behind real time, so an
             idle avatar keeps breathing and blinking at 25 fps.
    send     send queue -> websocket. A slow reader makes the queue overflow and the oldest frames are
             dropped (counted), so it never stalls its engine or anyone else's.
HTTP GETs other than /ws are answered from viewer/static/ (no path can leave that folder).
Security: 127.0.0.1 by default; any other bind address needs a token; Origin must be absent, same-origin or
allowed explicitly; messages are capped at max_message_bytes; at most max_sessions sessions.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import mimetypes
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from engine.avatar import Avatar
from engine.runtime import FPS, AvatarEngine, EngineConfig
from viewer.protocol import VERSION, ProtocolError, pack_frame, parse_control, unpack_audio

STATIC = Path(__file__).resolve().parent / "static"
CLOSE_PROTOCOL, CLOSE_POLICY, CLOSE_FULL = 1002, 1008, 1013


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    size: int = 512                  # square frames
    token: str = ""                  # required when host is not loopback
    allow_origins: list = field(default_factory=list)
    max_sessions: int = 4
    max_message_bytes: int = 1 << 20
    jpeg_quality: int = 80
    send_queue: int = 4              # unsent frames kept per session before the oldest is dropped
    hello_timeout_s: float = 10.0
    motion: str = "learned"          # engine.runtime.EngineConfig.motion
    model_dir: str = ""              # "" = the bundled models/default

    def check(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise ValueError(f"--host {self.host}: serving beyond this machine needs --token")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port: expected 0..65535, got {self.port}")
        if self.max_sessions < 1:
            raise ValueError(f"--max-sessions: expected >= 1, got {self.max_sessions}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def static_response(path: str) -> Response:
    """The file under STATIC for a URL path, or 404; '..', absolute paths, encoded tricks and links that resolve
    outside STATIC all end as 404."""
    rel = unquote(urlsplit(path).path).lstrip("/") or "index.html"
    root = STATIC.resolve()
    target = (root / rel).resolve() if "\x00" not in rel and "\\" not in rel else None
    if target is None or not target.is_relative_to(root) or not target.is_file():
        return _response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
    kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return _response(HTTPStatus.OK, target.read_bytes(), kind)


def _response(status: HTTPStatus, body: bytes, kind: str) -> Response:
    headers = Headers([("Content-Type", kind), ("Content-Length", str(len(body))), ("Cache-Control", "no-store"),
                       ("X-Content-Type-Options", "nosniff")])
    return Response(status.value, status.phrase, headers, body)


class Session:
    """One viewer: an engine, its send queue and its statistics."""

    def __init__(self, server: "AvatarServer", ws: ServerConnection):
        self.server, self.ws, self.id = server, ws, uuid.uuid4().hex[:12]
        cfg = server.cfg
        self.engine = AvatarEngine(server.avatar, EngineConfig(width=cfg.size, height=cfg.size, motion=cfg.motion,
                                                               model_dir=cfg.model_dir))
        self.outbox: deque = deque()
        self.replies: deque = deque(maxlen=64)    # JSON replies and errors, sent before frames (a flood drops old ones)
        self.audio_ready = asyncio.Event()        # new speech frames queued in the engine
        self.outbox_ready = asyncio.Event()       # new encoded frames to send
        self.arrivals: dict[int, float] = {}     # frame index -> when the audio completing it arrived
        self.enqueued = 0                         # frames queued in the engine so far (speech + idle)
        self.clock0: float | None = None          # wall time of frame 0
        self.sent = self.dropped = 0
        self.sent_times: deque = deque(maxlen=100)
        self.latencies: deque = deque(maxlen=200)
        self.last_seq = 0
        self.last_audio_at = -1.0                 # when the last speech chunk arrived
        self.closed = False

    # -- receive -----------------------------------------------------------------------------------------
    async def receive(self) -> None:
        async for message in self.ws:
            try:
                if isinstance(message, bytes):
                    self._audio(message)
                else:
                    await self._control(parse_control(message))
            except ProtocolError as e:
                await self.error(str(e))
            except ValueError as e:               # the engine's checks (rates, values)
                await self.error(f"rejected: {e}")

    def _audio(self, data: bytes) -> None:
        rate, seq, samples = unpack_audio(data)
        self.last_seq = seq
        self.last_audio_at = time.perf_counter()
        self._speech_queued(self.engine.push_audio(samples, rate))

    def _speech_queued(self, n: int) -> None:
        """n new speech frames are in the engine: note when their audio arrived, and wake the producer."""
        now = time.perf_counter()
        for i in range(self.enqueued, self.enqueued + n):
            self.arrivals[i] = now
        self.enqueued += n
        if n:
            self.audio_ready.set()

    async def _control(self, msg: dict) -> None:
        kind = msg["type"]
        if kind == "camera":
            self.engine.set_orbit(float(msg["yaw"]), float(msg.get("pitch", 0.0)), float(msg.get("zoom", 1.0)))
        elif kind == "end":
            self._speech_queued(self.engine.end_audio())
        elif kind == "interrupt":
            self.engine.interrupt()
            self.outbox.clear()
            self.enqueued = self.engine.index
            self.arrivals.clear()
            await self.send_json({"type": "interrupted", "next_index": self.engine.index})
        elif kind == "stats":
            await self.send_json({"type": "stats", **self.stats()})
        elif kind == "gesture":
            try:
                frames = await asyncio.to_thread(self.engine.command, msg["text"])
            except ValueError as e:
                await self.error(f"gesture: {e}")
                return
            await self.send_json({"type": "gesture", "text": msg["text"], "frames": frames})
        elif kind == "hello":
            await self.error("hello: already said")

    # -- produce and send ------------------------------------------------------------------------------
    async def produce(self) -> None:
        while not self.closed:
            item = await asyncio.to_thread(self._render_next)
            if item is None:
                await self._idle()
                continue
            if len(self.outbox) >= self.server.cfg.send_queue:
                self.outbox.popleft()
                self.dropped += 1
            self.outbox.append(item)
            self.outbox_ready.set()

    async def _idle(self) -> None:
        """Nothing queued: keep the session's clock at real time with silent (idle) frames."""
        now = time.perf_counter()
        if self.clock0 is None:
            self.clock0 = now
        ahead = self.engine.index / FPS - (now - self.clock0)
        streaming = now - self.last_audio_at < 3.0 / FPS       # speech in flight: its next chunk is coming
        if ahead <= 0.0 and self.engine.pending() == 0 and not streaming:
            self.enqueued += self.engine.push_silence(1.0 / FPS)
            return
        self.audio_ready.clear()
        try:
            await asyncio.wait_for(self.audio_ready.wait(), timeout=max(0.005, min(ahead, 1.0 / FPS)))
        except asyncio.TimeoutError:
            pass

    def _render_next(self):
        with self.server.render_lock:      # one frame at a time: a render already uses every core, and
            return self._render_and_encode()   # anything overlapping it only slows it down (measured)

    def _render_and_encode(self):
        frame = self.engine.next_frame()
        if frame is None:
            return None
        if self.clock0 is None:
            self.clock0 = time.perf_counter() - frame.pts
        # cvtColor, not a numpy channel flip + copy: 0.03 ms against 1.78 ms at 512 px, more than the JPEG itself
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, self.server.cfg.jpeg_quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        audio = (np.clip(frame.audio, -1.0, 1.0) * 32767.0).round().astype(np.int16)
        return frame, audio, jpeg.tobytes()

    async def send(self) -> None:
        """The only writer to the websocket once the session runs: replies first, then frames. The receive loop
        never waits on the network, so it keeps reading (and sees a close) however slow the client is."""
        while not self.closed:
            if self.replies:
                await self.ws.send(self.replies.popleft())
                continue
            if not self.outbox:
                self.outbox_ready.clear()
                await self.outbox_ready.wait()
                continue
            frame, audio, jpeg = self.outbox.popleft()
            arrived = self.arrivals.pop(frame.index, None)
            latency = 0.0 if arrived is None or not frame.speaking else time.perf_counter() - arrived
            await self.ws.send(pack_frame(frame.index, frame.pts, int(latency * 1e6), frame.speaking, audio, jpeg))
            self.sent += 1
            self.sent_times.append(time.perf_counter())
            if arrived is not None and frame.speaking:
                self.latencies.append(latency)

    # -- helpers -----------------------------------------------------------------------------------------
    def stats(self) -> dict:
        now = time.perf_counter()
        lat = sorted(self.latencies)
        pct = (lambda q: round(1e3 * lat[min(len(lat) - 1, int(q * len(lat)))], 1)) if lat else (lambda q: None)
        return {"frames_sent": self.sent, "frames_dropped": self.dropped,
                "fps": sum(1 for t in self.sent_times if now - t <= 1.0), "latency_ms_p50": pct(0.5),
                "latency_ms_p95": pct(0.95), "queued": self.engine.pending() + len(self.outbox),
                "last_seq": self.last_seq}

    async def send_json(self, msg: dict) -> None:
        """Queue a reply for the send task."""
        self.replies.append(json.dumps(msg))
        self.outbox_ready.set()

    async def error(self, message: str, fatal: bool = False) -> None:
        await self.send_json({"type": "error", "message": message, "fatal": fatal})


class AvatarServer:
    def __init__(self, avatar: Avatar | str | Path, cfg: ServerConfig = ServerConfig()):
        cfg.check()
        self.cfg = cfg
        self.avatar = avatar if isinstance(avatar, Avatar) else Avatar.from_pretrained(avatar)
        self.sessions: dict[str, Session] = {}
        self.port: int | None = None
        self.render_lock = threading.Lock()

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path != "/ws":
            return static_response(request.path)
        origin, host = request.headers.get("Origin"), request.headers.get("Host", "")
        if origin is not None and origin not in (f"http://{host}", f"https://{host}") and \
                origin not in self.cfg.allow_origins:
            return _response(HTTPStatus.FORBIDDEN, f"origin {origin} not allowed\n".encode(), "text/plain")
        return None

    async def handler(self, ws: ServerConnection) -> None:
        if len(self.sessions) >= self.cfg.max_sessions:
            await ws.close(CLOSE_FULL, f"server full ({self.cfg.max_sessions} sessions)")
            return
        if not await self._hello(ws):
            return
        session = Session(self, ws)
        self.sessions[session.id] = session
        try:
            await ws.send(json.dumps({"type": "welcome", "version": VERSION, "session": session.id,
                                      "width": self.cfg.size, "height": self.cfg.size, "fps": FPS,
                                      "sample_rate": 16000, "max_message_bytes": self.cfg.max_message_bytes}))
            tasks = [asyncio.create_task(t) for t in (session.receive(), session.produce(), session.send())]
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            session.closed = True
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for t in done:
                if t.exception() is not None and not isinstance(t.exception(), ConnectionClosed):
                    try:
                        await ws.send(json.dumps({"type": "error", "message": f"server error: {t.exception()}",
                                                  "fatal": True}))
                    except ConnectionClosed:
                        pass
                    await ws.close(1011, "server error")
        finally:
            session.closed = True
            self.sessions.pop(session.id, None)

    async def _hello(self, ws: ServerConnection) -> bool:
        async def refuse(code: int, message: str) -> bool:
            try:
                await ws.send(json.dumps({"type": "error", "message": message, "fatal": True}))
                await ws.close(code, message[:120])
            except ConnectionClosed:
                pass
            return False
        try:
            first = await asyncio.wait_for(ws.recv(), self.cfg.hello_timeout_s)
        except asyncio.TimeoutError:
            return await refuse(CLOSE_PROTOCOL, "expected hello within the time limit")
        except ConnectionClosed:
            return False
        if isinstance(first, bytes):
            return await refuse(CLOSE_PROTOCOL, "the first message must be a JSON hello")
        try:
            msg = parse_control(first)
        except ProtocolError as e:
            return await refuse(CLOSE_PROTOCOL, f"the first message must be a JSON hello: {e}")
        if msg["type"] != "hello":
            return await refuse(CLOSE_PROTOCOL, f"the first message must be hello, got {msg['type']!r}")
        if msg["version"] != VERSION:
            return await refuse(CLOSE_POLICY, f"hello: version {msg['version']}, this server speaks {VERSION}")
        if self.cfg.token and not hmac.compare_digest(str(msg.get("token", "")).encode(), self.cfg.token.encode()):
            return await refuse(CLOSE_POLICY, "hello: wrong or missing token")
        return True

    async def run(self, ready=None, stop: asyncio.Event | None = None) -> None:
        """Serve until `stop` is set (or forever); ready(port) is called once listening."""
        # compression=None: the frames are JPEG (and int16 audio), which permessage-deflate cannot shrink; it
        # only cost CPU beside the renders (5% of the server's samples with two sessions, py-spy)
        async with serve(self.handler, self.cfg.host, self.cfg.port, process_request=self.process_request,
                         max_size=self.cfg.max_message_bytes, ping_interval=20, ping_timeout=20,
                         compression=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            if ready is not None:
                ready(self.port)
            await (stop.wait() if stop is not None else asyncio.Future())
