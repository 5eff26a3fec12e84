"""The browser viewer while the server warms up (headless Chromium): the page loads, its status line says
"warming up" while /ws is refused, and it connects and draws frames by itself once the renderer is ready.
Skipped without chromium/chromedriver or mediapipe, as tests/test_browser.py is."""
# ruff: noqa: F811  (pytest injects the imported `avatar` fixture by parameter name)
import pytest

pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
from test_server import avatar  # noqa: E402,F401  (a fixture)
from warming_server import warming_server  # noqa: E402


def test_page_says_warming_up_then_connects(avatar, chrome):
    with warming_server(avatar) as (server, release, _):
        try:
            chrome.get(f"http://127.0.0.1:{server.port}/")
            chrome.wait_for("return !!(window.aa && window.aa.stats.state.startsWith('warming up'))", timeout=20,
                            what="the status line says warming up")
            chrome.wait_for("return document.getElementById('overlay').textContent.includes('warming up')",
                            timeout=5, what="the overlay shows it")
            assert chrome.execute("return window.aa.stats.framesReceived") == 0
            release.set()
            chrome.wait_for("return window.aa.stats.connected && window.aa.stats.framesDrawn > 3", timeout=30,
                            what="connected and drawing once warm")
            assert chrome.execute("return window.aa.stats.state") == "open"
        except BaseException:
            print("browser console:\n" + "\n".join(chrome.console_log()[-40:]))
            raise
