"""`audioavatar serve`: the live websocket server (docs/protocol.md) and the browser viewer's static files.

One AvatarEngine per session (viewer/session.py), all sharing one loaded Avatar and one render slot granted
earliest-deadline-first (viewer/pacing.py). HTTP requests are answered by viewer/web.py.

Start-up: the socket listens at once, but the server first builds or loads the splatting kernels and warms an
engine (one frame rendered); meanwhile /health says "warming" and /ws answers 503 + Retry-After, and the page
says "warming up". ready(port) is called when sessions can start.

Limits, each against one measured abuse:
- at most max_sessions sessions, counted from connect (before hello), so simultaneous hellos cannot overshoot;
- the Host header must name this server (DNS rebinding), Origin must be absent, same-origin or allowed;
- messages are capped at max_message_bytes, and websockets reads at most RECV_QUEUE messages ahead;
- at most max_audio_ahead_s of speech waits per session (the rest is cut off with an `error`); decoding and
  resampling run in worker threads, never on the event loop;
- a session behind real time drops frames unrendered until it is on time; a client that reads nothing costs no
  renders, and is closed (1008) after send_stall_s;
- every bad value is a non-fatal `error`; free memory is handed back to the OS when a session ends.
"""
from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from engine.avatar.bundle import Avatar
from engine.avatar.splat_pack import pack_avatar
from engine.runtime import FPS
from viewer.pacing import LoopWatch, MotionBatcher, RenderSlots, trim_memory
from viewer.protocol import RENDER_MODES, VERSION, ProtocolError, parse_control, short
from viewer.session import ClientStalled, Session, make_engine
from viewer.web import Gate, is_loopback

log = logging.getLogger("viewer.server")
CLOSE_PROTOCOL, CLOSE_POLICY, CLOSE_FULL = 1002, 1008, 1013
RECV_QUEUE = 4                   # incoming messages websockets buffers per connection before it stops reading
TRIM_DELAY_S = 1.0               # free memory goes back to the OS this long after a session ends


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
    send_queue: int = 4              # rendered frames waiting to be sent, per session; then rendering pauses
    hello_timeout_s: float = 10.0
    max_audio_ahead_s: float = 30.0  # seconds of speech received but not rendered yet, per session
    max_behind_s: float = 0.2        # a frame this late on the session's clock is dropped unrendered
    render_ahead_s: float = 1.0      # frames are rendered at most this long before they are due
    send_stall_s: float = 15.0       # a client whose socket takes nothing for this long is closed (1008)
    warm_up: bool = True             # build/load the kernels and render one frame before accepting sessions
    motion: str = "learned"          # engine.runtime.EngineConfig.motion
    model_dir: str = ""              # "" = the bundled models/default
    motion_linger_s: float = 0.02    # learned motion: how long a session needing motion waits for the others' audio
                                     # to batch with (viewer/pacing.py MotionBatcher); 0 = no wait
    motion_context: int = 4          # learned: EngineConfig.context, known frames per DiT window (0: the model's 8);
                                     # 4 is 16% cheaper per frame with the same lip figures (docs/scaling.md)
    render: str = "server"           # a hello without "render": "server" (JPEG frames) or "client" (motion only;
                                     # the page splats the avatar from /avatar.splat itself)

    def check(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise ValueError(f"--host {self.host}: serving beyond this machine needs --token")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port: expected 0..65535, got {self.port}")
        if self.max_sessions < 1:
            raise ValueError(f"--max-sessions: expected >= 1, got {self.max_sessions}")
        for name in ("max_audio_ahead_s", "max_behind_s", "render_ahead_s", "send_stall_s", "hello_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a positive number of seconds, got {value!r}")
        if self.send_queue < 1:
            raise ValueError(f"send_queue: expected >= 1, got {self.send_queue}")
        if not (isinstance(self.motion_linger_s, (int, float)) and 0 <= self.motion_linger_s <= 1):
            raise ValueError(f"motion_linger_s: expected 0..1 seconds, got {self.motion_linger_s!r}")
        if self.render not in RENDER_MODES:
            raise ValueError(f"--render: expected one of {list(RENDER_MODES)}, got {self.render!r}")


class AvatarServer:
    def __init__(self, avatar: Avatar | str | Path, cfg: ServerConfig | None = None):
        cfg = cfg if cfg is not None else ServerConfig()
        cfg.check()
        self.cfg = cfg
        self.avatar = avatar if isinstance(avatar, Avatar) else Avatar.from_pretrained(avatar)
        self.sessions: dict[str, Session] = {}
        self.admitted = 0                # connections holding a place under max_sessions (from connect)
        self.state = "warming"           # -> "ready" once the renderer is warm
        self.port: int | None = None
        self.slots = RenderSlots()
        self.motion = MotionBatcher(self, cfg.motion_linger_s)
        self.watch = LoopWatch()
        self.process_request = Gate(self)
        self._trim: asyncio.Task | None = None
        self._splat: tuple[bytes, bytes, str] | None = None   # (packed avatar, gzip'd, ETag): splat()

    async def handler(self, ws: ServerConnection) -> None:
        # Admission is counted here, before any await: asyncio runs this check and the increment in one step,
        # so however many clients connect at once, at most max_sessions get past it.
        if self.admitted >= self.cfg.max_sessions:
            try:
                await ws.close(CLOSE_FULL, f"server full ({self.cfg.max_sessions} sessions)")
            except ConnectionClosed:
                pass
            return
        self.admitted += 1
        try:
            await self._serve_session(ws)
        finally:
            self.admitted -= 1
            self._trim_soon()

    def _trim_soon(self) -> None:
        """Hand free memory back to the OS TRIM_DELAY_S after the last session ended (by then the connection's
        buffers are gone too), once however many end together."""
        if self._trim is not None and not self._trim.done():
            self._trim.cancel()

        async def later():
            await asyncio.sleep(TRIM_DELAY_S)
            await asyncio.to_thread(trim_memory)
        self._trim = asyncio.create_task(later())

    def splat(self) -> tuple[bytes, bytes, str]:
        """(the avatar packed for client rendering, the same gzip'd, its ETag), made once. ValueError (saying why)
        for an avatar that cannot be packed; server rendering is unaffected."""
        if self._splat is None:
            blob = pack_avatar(self.avatar)
            self._splat = (blob, gzip.compress(blob, 6, mtime=0), '"' + hashlib.sha256(blob).hexdigest()[:32] + '"')
        return self._splat

    async def _serve_session(self, ws: ServerConnection) -> None:
        hello = await self._hello(ws)
        if hello is None:
            return
        render = hello.get("render", self.cfg.render)
        if render == "client":
            try:
                await asyncio.to_thread(self.splat)
            except ValueError as e:
                await ws.send(json.dumps({"type": "error", "message": f"client rendering unavailable: {e}",
                                          "fatal": True}))
                await ws.close(CLOSE_POLICY, "client rendering unavailable")
                return
        engine = await asyncio.to_thread(make_engine, self)    # loading the motion models takes ~1 s
        session = Session(self, ws, engine, render=render)
        self.sessions[session.id] = session
        try:
            welcome = {"type": "welcome", "version": VERSION, "session": session.id, "render": render,
                       "width": self.cfg.size, "height": self.cfg.size, "fps": FPS, "sample_rate": 16000,
                       "max_message_bytes": self.cfg.max_message_bytes,
                       "max_audio_ahead_s": self.cfg.max_audio_ahead_s}
            if render == "client":
                blob, _, etag = await asyncio.to_thread(self.splat)
                welcome.update(avatar="/avatar.splat", avatar_bytes=len(blob), avatar_etag=etag)
            await ws.send(json.dumps(welcome))
            tasks = [asyncio.create_task(t) for t in (session.receive(), session.produce(), session.send())]
            try:
                done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                session.closed = True
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for t in done:
                exc = None if t.cancelled() else t.exception()
                if isinstance(exc, ClientStalled):
                    await ws.close(CLOSE_POLICY, str(exc))
                elif exc is not None and not isinstance(exc, ConnectionClosed):
                    log.error("session %s failed", session.id, exc_info=exc)
                    try:
                        await ws.send(json.dumps({"type": "error", "message": f"server error: {exc}",
                                                  "fatal": True}))
                    except ConnectionClosed:
                        pass
                    await ws.close(1011, "server error")
        except ConnectionClosed:
            pass
        finally:
            session.closed = True
            self.sessions.pop(session.id, None)

    async def _hello(self, ws: ServerConnection) -> dict | None:
        """The client's hello message once it is valid; None when the connection was refused or closed."""
        async def refuse(code: int, message: str) -> None:
            try:
                await ws.send(json.dumps({"type": "error", "message": message, "fatal": True}))
                await ws.close(code, message[:120])
            except ConnectionClosed:
                pass
            return None
        try:
            first = await asyncio.wait_for(ws.recv(), self.cfg.hello_timeout_s)
        except asyncio.TimeoutError:
            return await refuse(CLOSE_PROTOCOL, "expected hello within the time limit")
        except ConnectionClosed:
            return None
        if isinstance(first, bytes):
            return await refuse(CLOSE_PROTOCOL, "the first message must be a JSON hello")
        try:
            msg = parse_control(first)
        except ProtocolError as e:
            return await refuse(CLOSE_PROTOCOL, f"the first message must be a JSON hello: {e}")
        if msg["type"] != "hello":
            return await refuse(CLOSE_PROTOCOL, f"the first message must be hello, got {msg['type']!r}")
        if msg["version"] != VERSION:
            return await refuse(CLOSE_POLICY, f"hello: version {short(msg['version'])}, this server speaks {VERSION}")
        if self.cfg.token and not hmac.compare_digest(str(msg.get("token", "")).encode(), self.cfg.token.encode()):
            return await refuse(CLOSE_POLICY, "hello: wrong or missing token")
        return msg

    def _warm_up(self) -> None:
        """Build or load the splatting kernels (cuda_ext, lazily loaded by the first render), load the motion
        models and run every stage once: render and encode one frame."""
        engine = make_engine(self)
        engine.push_silence(2.0 / FPS)
        frame = engine.next_frame()
        if frame is None:
            raise RuntimeError("warm-up: the engine produced no frame")
        cv2.imencode(".jpg", frame.image)
        try:
            self.splat()
        except ValueError as e:                               # server rendering still works
            log.warning("client rendering unavailable for this avatar: %s", e)

    async def run(self, ready=None, stop: asyncio.Event | None = None, listening=None) -> None:
        """Serve until `stop` is set (or forever). listening(port) is called once the socket is bound (the page
        and /health answer from then on), ready(port) once the renderer is warm and sessions are accepted."""
        watch = asyncio.create_task(self.watch.run())
        try:
            # compression=None: the frames are JPEG (and int16 audio), which permessage-deflate cannot shrink; it
            # only cost CPU beside the renders (5% of the server's samples with two sessions, py-spy)
            async with serve(self.handler, self.cfg.host, self.cfg.port, process_request=self.process_request,
                             max_size=self.cfg.max_message_bytes, max_queue=RECV_QUEUE, ping_interval=20,
                             ping_timeout=20, compression=None) as server:
                self.port = server.sockets[0].getsockname()[1]
                if listening is not None:
                    listening(self.port)
                if self.cfg.warm_up:
                    await asyncio.to_thread(self._warm_up)
                    await asyncio.to_thread(trim_memory)
                self.state = "ready"
                if ready is not None:
                    ready(self.port)
                await (stop.wait() if stop is not None else asyncio.Future())
        finally:
            watch.cancel()
            if self._trim is not None:
                self._trim.cancel()
            self.motion.close()
            self.slots.close()
