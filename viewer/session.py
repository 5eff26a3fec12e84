"""One live session of `audioavatar serve` (viewer/server.py): an engine, its clock, its queues and statistics.

Three asyncio tasks per session:
    receive  websocket -> audio chunks into the engine (push_audio, in a worker thread), control messages. Audio
             beyond max_audio_ahead_s of speech not yet rendered is cut off with an `error` reply. Every bad
             message gets a non-fatal `error` and is ignored.
    produce  the session's clock: frame i is due at clock0 + i / 25. The next frame is rendered (one render at a
             time across sessions, earliest due first: viewer/pacing.py) no sooner than render_ahead_s before it
             is due, or, when it is more than max_behind_s late, dropped unrendered with every other late frame
             so the session catches up at once. A session that sent more audio than max_audio_ahead_s renders
             last (its deadline counts OVERRUN_PENALTY_S later) until its backlog is down, so under load it,
             not the others, falls behind. With no speech queued, silence is pushed as each frame falls due,
             so an idle avatar breathes and blinks at 25 fps. While the client has send_queue frames unsent,
             nothing is rendered for it.
    send     replies first, then frames. A frame grown stale in the queue is dropped; a client whose socket
             accepts nothing for send_stall_s is closed (1008).
The clock follows a late sender: speech that arrives after its frame fell due, while the producer sat waiting for
it, moves the clock on (less any time the event loop itself was frozen, when the audio was in fact on time).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque

import cv2
import numpy as np
import torch

from engine.runtime import FPS, AvatarEngine, EngineConfig
from viewer.protocol import ProtocolError, pack_frame, pack_motion, parse_control, unpack_audio

log = logging.getLogger("viewer.server")
STALE_SLACK_S = 0.15        # a rendered frame later than max_behind_s + this when its turn to be sent comes: dropped
MAX_IDLE_CATCH_UP = 10 * FPS  # idle frames pushed at once to catch up; a longer gap moves the clock instead
MAX_ERROR_CHARS = 300
AHEAD_ERROR_EVERY_S = 1.0   # at most one "too much audio ahead" error a second per session
OVERRUN_PENALTY_S = 1.0     # a session that sent more audio than max_audio_ahead_s renders as if its frames were
OVERRUN_MEMORY_S = 5.0      # due this much later (the others go first), until for this long it has cut nothing
                            # and its backlog is under half of max_audio_ahead_s


class ClientStalled(Exception):
    """The client's socket accepted nothing for send_stall_s."""


def make_engine(server) -> AvatarEngine:
    cfg = server.cfg
    return AvatarEngine(server.avatar, EngineConfig(width=cfg.size, height=cfg.size, motion=cfg.motion,
                                                    model_dir=cfg.model_dir, context=cfg.motion_context))


class Session:
    def __init__(self, server, ws, engine: AvatarEngine | None = None, render: str = "server"):
        """render: "server" sends JPEG frames (engine.next_frame), "client" sends motion messages
        (engine.next_motion) for a page that splats the packed avatar itself."""
        self.server, self.ws, self.id = server, ws, uuid.uuid4().hex[:12]
        self.cfg = server.cfg
        self.render = render
        self.engine = engine if engine is not None else make_engine(server)
        self.outbox: deque = deque()              # (frame, pack(latency_us) -> bytes) made, not sent yet
        self.replies: deque = deque(maxlen=64)    # JSON replies and errors, sent before frames (a flood drops old ones)
        self.audio_ready = asyncio.Event()        # new speech frames queued in the engine
        self.outbox_ready = asyncio.Event()       # something to send
        self.outbox_space = asyncio.Event()       # a frame left the outbox
        self.wake = asyncio.Event()               # an interrupt: the producer's plans changed
        self.feeding = asyncio.Lock()             # one push into the engine at a time, so each push's frames are
                                                  # counted (enqueued, arrivals) before the next one starts
        self.arrivals: dict[int, float] = {}     # frame index -> when the audio completing it arrived
        self.enqueued = 0                         # frames queued in the engine so far (speech + idle)
        self.clock0: float | None = None          # wall time (perf_counter) at which frame 0 is due
        self.sent = self.dropped = self.skipped = 0
        self.audio_dropped_s = 0.0
        self.ahead_error_at = -AHEAD_ERROR_EVERY_S           # when the last "audio ahead" error was sent
        self.overrun_at = -OVERRUN_MEMORY_S                  # when audio was last cut for being too far ahead
        self.overran = False                                 # penalized: see OVERRUN_PENALTY_S
        self.sent_times: deque = deque(maxlen=100)
        self.latencies: deque = deque(maxlen=200)
        self.last_seq = 0
        self.last_audio_at = -1.0                 # when the last speech chunk arrived
        self.pushing = False                      # speech is being pushed into the engine (worker thread)
        self.waiting_since: float | None = None   # since when the producer has been waiting for audio
        self.closed = False

    def due(self, index: int) -> float:
        """When frame `index` is due on the session's clock (perf_counter seconds)."""
        return (self.clock0 if self.clock0 is not None else time.perf_counter()) + index / FPS

    # -- receive -----------------------------------------------------------------------------------------
    async def receive(self) -> None:
        async for message in self.ws:
            try:
                if isinstance(message, bytes):
                    await self._audio(message)
                else:
                    await self._control(parse_control(message))
            except ProtocolError as e:
                await self.error(str(e))
            except (ValueError, OverflowError) as e:          # the engine's checks (rates, values)
                await self.error(f"rejected: {e}")
            except Exception as e:                            # a bug, but one message is never worth the session
                log.exception("session %s: message rejected", self.id)
                await self.error(f"rejected: {type(e).__name__}")

    async def _audio(self, data: bytes) -> None:
        rate, seq, samples = unpack_audio(data)
        self.last_seq = seq
        self.last_audio_at = time.perf_counter()
        limit = self.cfg.max_audio_ahead_s
        room = limit - self.engine.pending() / FPS
        keep = min(samples.shape[0], max(0, int(room * rate)))
        if keep < samples.shape[0]:
            cut = (samples.shape[0] - keep) / rate
            self.audio_dropped_s += cut
            now = self.overrun_at = time.perf_counter()
            self.overran = True
            if now - self.ahead_error_at >= AHEAD_ERROR_EVERY_S:   # a flood gets one error a second, not one each
                self.ahead_error_at = now
                await self.error(f"audio: more than {limit:g} s of speech is waiting to be rendered; dropped "
                                 f"{cut:.2f} s of chunk {seq}, {self.audio_dropped_s:.2f} s in all (send audio "
                                 "closer to real time)")
        if keep == 0:
            return
        self.pushing = True
        try:
            async with self.feeding:
                self._speech_queued(await asyncio.to_thread(self.engine.push_audio, samples[:keep], rate))
        finally:
            self.pushing = False

    def _speech_queued(self, n: int) -> None:
        """n new speech frames are in the engine: note when their audio arrived, and wake the producer.
        If the producer sat waiting for this audio after its frame fell due, the sender was late, and the clock
        moves on by that wait beyond half of max_behind_s (jitter within that never moves it, else each late
        chunk would push it on and none back). Time the event loop was frozen does not count: the audio was
        there, unread. Nor does a backlog after a stall: the producer was busy dropping frames, not waiting."""
        now = time.perf_counter()
        first = self.enqueued
        if n and self.waiting_since is not None and self.clock0 is not None:
            since = max(self.due(first), self.waiting_since)
            late = now - since - self.server.watch.frozen(since, now)
            slack = self.cfg.max_behind_s / 2
            if late > slack:
                self.clock0 += late - slack
        for i in range(first, first + n):
            self.arrivals[i] = now
        self.enqueued += n
        if n:
            self.audio_ready.set()

    async def _control(self, msg: dict) -> None:
        kind = msg["type"]
        if kind == "camera":
            if self.render == "client":                       # the page orbits itself; the engine draws nothing
                return
            before = self.engine.viewmat
            self.engine.set_orbit(float(msg["yaw"]), float(msg.get("pitch", 0.0)), float(msg.get("zoom", 1.0)))
            if not bool(torch.isfinite(self.engine.viewmat).all()):
                self.engine.viewmat = before
                await self.error("camera: that view cannot be rendered; kept the previous one")
        elif kind == "end":
            async with self.feeding:
                self._speech_queued(await asyncio.to_thread(self.engine.end_audio))
        elif kind == "interrupt":
            async with self.feeding:
                await asyncio.to_thread(self.engine.interrupt)
                self.enqueued = self.engine.index
                self.arrivals.clear()
            while self.outbox:
                self._drop(self.outbox.popleft()[0].index)
            self.outbox_space.set()
            self.wake.set()                                   # wake the producer if it waits ahead of time
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
        elif kind == "marks":
            try:
                await asyncio.to_thread(self.engine.push_marks, msg["marks"], msg["alphabet"])
            except ValueError as e:
                await self.error(f"marks: {e}")
        elif kind == "hello":
            await self.error("hello: already said")

    # -- produce -----------------------------------------------------------------------------------------
    async def produce(self) -> None:
        if self.clock0 is None:
            self.clock0 = time.perf_counter()
        cfg = self.cfg
        while not self.closed:
            if self.engine.pending() == 0:
                await self._idle()
                continue
            self.waiting_since = None
            due = self.due(self.engine.index)
            now = time.perf_counter()
            if now - due > cfg.max_behind_s:
                await self._catch_up(due)
                continue
            if due - now > cfg.render_ahead_s:                # far ahead of real time (a burst): wait, so a
                self.wake.clear()                             # session never renders faster than real time
                try:                                          # for long (an interrupt wakes us)
                    await asyncio.wait_for(self.wake.wait(), due - now - cfg.render_ahead_s)
                except asyncio.TimeoutError:
                    pass
                continue
            if len(self.outbox) >= cfg.send_queue:            # the client is not reading: wait for room, or
                self.outbox_space.clear()                     # until this frame is too late to be worth it
                try:
                    await asyncio.wait_for(self.outbox_space.wait(), max(0.005, due + cfg.max_behind_s - now))
                except asyncio.TimeoutError:
                    pass
                continue
            if self.overran and now - self.overrun_at > OVERRUN_MEMORY_S and \
                    self.engine.pending() / FPS < cfg.max_audio_ahead_s / 2:
                self.overran = False                          # it behaves again
            deadline = due + (OVERRUN_PENALTY_S if self.overran else 0.0)
            if self.engine.needs_motion() and self.engine.batchable():
                await self.server.motion.generate(self, deadline)     # with the other sessions' (pacing.py)
            make = self._move_and_encode if self.render == "client" else self._render_and_encode
            item = await self.server.slots.run(deadline, make)
            if item is not None:
                self.outbox.append(item)
                self.outbox_ready.set()

    async def _idle(self) -> None:
        """Nothing queued: keep the session's clock at real time with silent (idle) frames."""
        now = time.perf_counter()
        ahead = self.due(self.engine.index) - now
        streaming = self.pushing or now - self.last_audio_at < 3.0 / FPS   # speech in flight: more is coming
        if ahead <= 0.0 and not streaming:
            behind = int(-ahead * FPS) + 1                    # frames due by now, this one included
            if behind > MAX_IDLE_CATCH_UP:                    # a long freeze: move the clock, not the avatar
                self.clock0 += (behind - MAX_IDLE_CATCH_UP) / FPS
                behind = MAX_IDLE_CATCH_UP
            self.waiting_since = None
            async with self.feeding:
                n = await asyncio.to_thread(self.engine.push_silence, behind / FPS)
                self.enqueued += n                            # (not `+= await`: that would add to a stale value)
            return
        if self.waiting_since is None:
            self.waiting_since = now
        # until the next idle frame is due, or (speech in flight) until it stops being in flight; new speech wakes us
        wait = ahead if ahead > 0.0 else self.last_audio_at + 3.0 / FPS - now
        self.audio_ready.clear()
        try:
            await asyncio.wait_for(self.audio_ready.wait(), timeout=min(max(0.005, wait), 1.0 / FPS))
        except asyncio.TimeoutError:
            pass

    async def _catch_up(self, due: float) -> None:
        """Behind real time: drop frames unrendered until the next one is on time (or none is queued). Their
        motion is still made (the stream stays continuous), with the other sessions' where it is the learned
        models': alone, on an overloaded server, every late session would pay the models' full per-call cost and
        fall further behind."""
        batched = self.engine.batchable()
        if batched and self.engine.needs_motion():
            await self.server.motion.generate(self, due)
        first = self.engine.index
        limit = self.cfg.max_behind_s

        def skip() -> int:
            n = 0
            while time.perf_counter() - self.due(self.engine.index) > limit and \
                    self.engine.skip_frame(generate=not batched):
                n += 1
            return n
        n = await self.server.slots.run(due, skip)
        for i in range(first, first + n):
            self._drop(i)
        self.skipped += n

    def _render_and_encode(self):
        frame = self.engine.next_frame()
        if frame is None:
            return None
        # cvtColor, not a numpy channel flip + copy: 0.03 ms against 1.78 ms at 512 px, more than the JPEG itself
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        audio = (np.clip(frame.audio, -1.0, 1.0) * 32767.0).round().astype(np.int16)
        jpeg = jpeg.tobytes()
        return frame, lambda latency_us: pack_frame(frame.index, frame.pts, latency_us, frame.speaking, audio, jpeg)

    def _move_and_encode(self):
        """Client rendering: the next frame's motion (no image); silent frames carry no audio."""
        m = self.engine.next_motion()
        if m is None:
            return None
        audio = (np.clip(m.audio, -1.0, 1.0) * 32767.0).round().astype(np.int16) if m.speaking else \
            np.zeros(0, np.int16)
        return m, lambda latency_us: pack_motion(m.index, m.pts, latency_us, m.speaking, audio, m.translation,
                                                 m.bones, m.deltas)

    def _drop(self, index: int) -> None:
        self.arrivals.pop(index, None)
        self.dropped += 1

    # -- send --------------------------------------------------------------------------------------------
    async def send(self) -> None:
        """The only writer to the websocket once the session runs: replies first, then frames. The receive loop
        never waits on the network, so it keeps reading (and sees a close) however slow the client is."""
        stale = self.cfg.max_behind_s + STALE_SLACK_S
        while not self.closed:
            if self.replies:
                await self._send(self.replies.popleft())
                continue
            if not self.outbox:
                self.outbox_ready.clear()
                await self.outbox_ready.wait()
                continue
            frame, pack = self.outbox.popleft()
            self.outbox_space.set()
            now = time.perf_counter()
            if now - self.due(frame.index) > stale:
                self._drop(frame.index)
                continue
            arrived = self.arrivals.pop(frame.index, None)
            latency = 0.0 if arrived is None or not frame.speaking else now - arrived
            await self._send(pack(int(latency * 1e6)))
            self.sent += 1
            self.sent_times.append(time.perf_counter())
            if arrived is not None and frame.speaking:
                self.latencies.append(latency)

    async def _send(self, message) -> None:
        try:
            async with asyncio.timeout(self.cfg.send_stall_s):     # no extra task per send, unlike wait_for
                await self.ws.send(message)
        except TimeoutError:
            raise ClientStalled(f"the client read nothing for {self.cfg.send_stall_s:g} s") from None

    # -- helpers -----------------------------------------------------------------------------------------
    def stats(self) -> dict:
        now = time.perf_counter()
        lat = sorted(self.latencies)
        pct = (lambda q: round(1e3 * lat[min(len(lat) - 1, int(q * len(lat)))], 1)) if lat else (lambda q: None)
        return {"frames_sent": self.sent, "frames_dropped": self.dropped, "frames_late": self.skipped,
                "audio_dropped_s": round(self.audio_dropped_s, 3),
                "fps": sum(1 for t in self.sent_times if now - t <= 1.0), "latency_ms_p50": pct(0.5),
                "latency_ms_p95": pct(0.95), "queued": self.engine.pending() + len(self.outbox),
                "last_seq": self.last_seq}

    async def send_json(self, msg: dict) -> None:
        """Queue a reply for the send task."""
        self.replies.append(json.dumps(msg))
        self.outbox_ready.set()

    async def error(self, message: str, fatal: bool = False) -> None:
        if len(message) > MAX_ERROR_CHARS:
            message = message[:MAX_ERROR_CHARS - 3] + "..."
        await self.send_json({"type": "error", "message": message, "fatal": fatal})

