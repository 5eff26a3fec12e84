"""The browser viewer while the server warms up (headless Chromium): the page loads, its status line says
"warming up" while /ws is refused, and it connects and draws frames by itself once the renderer is ready.
Skipped without chromium/chromedriver or mediapipe, as tests/test_browser.py is."""
# ruff: noqa: F811  (pytest injects the imported `avatar` fixture by parameter name)
import asyncio
import threading

import pytest

from webdriver_client import BrowserMissing, Chrome, find_browser

pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
from test_server import avatar  # noqa: E402,F401  (a fixture)
from viewer.server import AvatarServer, ServerConfig  # noqa: E402


@pytest.fixture(scope="module")
def chrome():
    try:
        find_browser()
    except BrowserMissing as e:
        pytest.skip(str(e))
    browser = Chrome.start()
    try:
        yield browser
    finally:
        browser.close()


def test_page_says_warming_up_then_connects(avatar, chrome):
    release = threading.Event()

    class SlowWarmUp(AvatarServer):
        def _warm_up(self):
            assert release.wait(60)
            super()._warm_up()

    server = SlowWarmUp(avatar, ServerConfig(port=0, size=64, motion="procedural"))
    listening, loop, stop = threading.Event(), asyncio.new_event_loop(), []

    def run():
        stop.append(asyncio.Event())
        loop.run_until_complete(server.run(None, stop[0], lambda port: listening.set()))
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert listening.wait(30)
        chrome.get(f"http://127.0.0.1:{server.port}/")
        chrome.wait_for("return !!(window.aa && window.aa.stats.state.startsWith('warming up'))", timeout=20,
                        what="the status line says warming up")
        chrome.wait_for("return document.getElementById('overlay').textContent.includes('warming up')", timeout=5,
                        what="the overlay shows it")
        assert chrome.execute("return window.aa.stats.framesReceived") == 0
        release.set()
        chrome.wait_for("return window.aa.stats.connected && window.aa.stats.framesDrawn > 3", timeout=30,
                        what="connected and drawing once warm")
        assert chrome.execute("return window.aa.stats.state") == "open"
    except BaseException:
        print("browser console:\n" + "\n".join(chrome.console_log()[-40:]))
        raise
    finally:
        release.set()
        if stop:
            loop.call_soon_threadsafe(stop[0].set)
        thread.join(10)
