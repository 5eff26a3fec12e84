"""A live AvatarServer on a thread whose renderer warm-up waits until the test releases it: the harness of the
warming-up tests (tests/test_server_limits.py, tests/test_server_browser.py)."""
import asyncio
import threading
from contextlib import contextmanager

from viewer.server import AvatarServer, ServerConfig


@contextmanager
def warming_server(avatar, hold_s: float = 60):
    """Yields (server, release, ready) once the server listens: `release.set()` lets the warm-up finish, and
    `ready` is set when the server says it is ready. The server stops when the block ends."""
    release, listening, ready = threading.Event(), threading.Event(), threading.Event()

    class SlowWarmUp(AvatarServer):
        def _warm_up(self):
            assert release.wait(hold_s)
            super()._warm_up()

    server = SlowWarmUp(avatar, ServerConfig(port=0, size=64, motion="procedural"))
    loop, stop = asyncio.new_event_loop(), []

    def run():
        stop.append(asyncio.Event())
        loop.run_until_complete(server.run(lambda port: ready.set(), stop[0], lambda port: listening.set()))
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert listening.wait(30), "the server did not start listening within 30 s"
        yield server, release, ready
    finally:
        release.set()
        if stop:
            loop.call_soon_threadsafe(stop[0].set)
        thread.join(10)
