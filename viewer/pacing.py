"""Real-time pacing for the live server: who renders next, how long the event loop was frozen, and handing freed
memory back to the OS. (A late frame is dropped unrendered with AvatarEngine.skip_frame.)

- RenderSlots: one render at a time across sessions (a render already uses every core, and anything overlapping
  it only slows it down), granted earliest deadline first. A session's deadline is when its next frame is due on
  its clock, so a session that is due now goes before one rendering ahead of real time (a TTS burst, or a
  client sending faster than real time): one busy session cannot starve another.
- LoopWatch: spans when the event loop ran nothing (the process was stopped or starved of CPU). Audio read
  right after such a span arrived during it, so the session does not mistake it for a late sender.
- MotionBatcher: the sessions' learned motion generated together, one batch per round (each of the models' calls
  made once for all of them), after a short linger that lets sessions on other 40 ms beats join.
- trim_memory: glibc keeps freed memory in the process (engine._alloc raises its trim threshold for the render
  loop's sake); after a session ends this returns the free pages.
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import heapq
import itertools
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from engine.runtime import generate_together


class RenderSlots:
    """An asyncio lock granted by deadline: release() hands it to the waiter with the earliest deadline."""

    def __init__(self):
        self._busy = False
        self._waiters: list = []                 # heap of (deadline, order, future)
        self._order = itertools.count()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="render")

    async def run(self, deadline: float, fn, *args):
        """fn(*args) in the render thread once the slot is ours. The slot is released when fn really returns,
        even if the caller is cancelled first, so two renders never overlap."""
        await self.acquire(deadline)
        loop = asyncio.get_running_loop()

        def done(_):
            try:
                loop.call_soon_threadsafe(self.release)
            except RuntimeError:                 # the loop is closed: nobody is left waiting
                pass
        try:
            job = self._pool.submit(fn, *args)
        except BaseException:
            self.release()
            raise
        job.add_done_callback(done)
        return await asyncio.wrap_future(job)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def busy(self) -> bool:
        return self._busy

    async def acquire(self, deadline: float) -> None:
        if not self._busy and not self._waiters:
            self._busy = True
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (deadline, next(self._order), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():     # granted just as we were cancelled: pass it on
                self.release()
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():                            # a cancelled waiter's future is done already
                future.set_result(None)
                return
        self._busy = False


class LoopWatch:
    """Ticks every `period` seconds; a tick later than `period + min_gap` records the span as frozen."""

    def __init__(self, period: float = 0.02, min_gap: float = 0.08, keep: int = 64):
        self.period, self.min_gap = period, min_gap
        self.spans: deque = deque(maxlen=keep)
        self.last: float | None = None          # the last tick; None until run() starts

    async def run(self) -> None:
        self.last = time.perf_counter()
        while True:
            await asyncio.sleep(self.period)
            now = time.perf_counter()
            if now - self.last > self.period + self.min_gap:
                self.spans.append((self.last + self.period, now))
            self.last = now

    def frozen(self, t0: float, t1: float) -> float:
        """Seconds of [t0, t1] during which the loop was frozen, including a freeze that has just ended but not
        been ticked yet (right after a stop, other callbacks may run before the watch's)."""
        spans = list(self.spans)
        if self.last is not None and t1 - self.last > self.period + self.min_gap:
            spans.append((self.last + self.period, t1))
        return sum(max(0.0, min(b, t1) - max(a, t0)) for a, b in spans)


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def trim_memory() -> bool:
    """Return free heap pages to the OS (glibc malloc_trim); False where that is not available."""
    fn = getattr(_LIBC, "malloc_trim", None)
    return bool(fn(0)) if fn is not None else False


class MotionBatcher:
    """Sessions whose next frame needs motion from the learned models share one batch: the first asks, waits
    linger_s for the others (each session's audio arrives on its own 40 ms beat), then one
    engine.runtime.generate_together runs, in the render slot, for every session that asked and every other one
    with audio waiting. The models' calls (engine/motion/batch.py), which cost about as much for one session as
    for ten, are made once for all of them, and a session with two frames waiting moves both in one call. A
    session alone (or on the procedural rig, which has nothing to batch) does not wait."""

    def __init__(self, server, linger_s: float):
        self.server, self.linger_s = server, linger_s
        self._round: tuple[asyncio.Future, list] | None = None     # (done, [deadline, sessions])
        self._tasks: set[asyncio.Task] = set()                     # rounds in flight

    async def generate(self, session, deadline: float) -> None:
        """Return once `session`'s waiting audio has become motion (with everyone else's)."""
        if self._round is None:
            done = asyncio.get_running_loop().create_future()
            self._round = (done, [deadline, {session}])
            task = asyncio.create_task(self._run(self._round))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            done, (first, members) = self._round
            self._round[1][0] = min(first, deadline)
            members.add(session)
        await asyncio.shield(done)

    def close(self) -> None:
        """The server stops: cancel the rounds in flight (their sessions are being cancelled too)."""
        for task in list(self._tasks):
            task.cancel()

    async def _run(self, round_) -> None:
        done, state = round_
        others = [s for s in self.server.sessions.values() if not s.closed and s.engine.batchable()]
        if len(others) > 1:
            await asyncio.sleep(self.linger_s)
        self._round = None                                           # later askers start the next round
        deadline, members = state
        engines = [s.engine for s in members] + [s.engine for s in others
                                                 if s not in members and s.engine.needs_motion()]
        try:
            await self.server.slots.run(deadline, generate_together, engines)
            done.set_result(None)
        except BaseException as e:                                   # every waiter hears of it
            done.set_exception(e)
            if not isinstance(e, Exception):
                raise
