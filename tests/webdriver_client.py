"""A minimal W3C WebDriver client for headless Chromium through chromedriver, standard library only.

    with Chrome.start() as browser:              # chromedriver on a free port -> one headless Chromium session
        browser.get("http://127.0.0.1:8000/")
        browser.execute("return document.title")  # a returned Promise is awaited by the driver
        browser.drag(x, y, dx, dy)                # real pointer input (WebDriver actions)

`Chrome.start()` raises `BrowserMissing` when chromium or chromedriver is not installed (Debian: apt-get install
chromium chromium-driver). The session is deleted and chromedriver's process group killed on close, even when
the test failed half-way.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROME_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--window-size=800,700",
]


class BrowserMissing(RuntimeError):
    """chromium or chromedriver is not installed."""


class WebDriverError(RuntimeError):
    """The driver answered a command with an error."""


def find_browser() -> tuple[str, str]:
    """(chromium, chromedriver) paths, or BrowserMissing naming what is absent."""
    chromium = next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver)) if path is None]
    if missing:
        raise BrowserMissing(f"{' and '.join(missing)} not on PATH (Debian: apt-get install chromium chromium-driver)")
    return chromium, driver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_group(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """Terminate a process started with start_new_session=True, and what it started, then reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)   # children left behind in the group (chromium helpers)
    except ProcessLookupError:
        pass
    proc.wait()


class Chrome:
    """One chromedriver process and one browser session."""

    def __init__(self, driver_proc: subprocess.Popen, base: str, profile: tempfile.TemporaryDirectory):
        self.proc, self.base, self.profile = driver_proc, base, profile
        self.session: str | None = None

    @classmethod
    def start(cls, timeout: float = 30.0) -> "Chrome":
        chromium, driver = find_browser()
        port = free_port()
        profile = tempfile.TemporaryDirectory(prefix="aa-chrome-", ignore_cleanup_errors=True)
        log = open(Path(profile.name) / "chromedriver.log", "wb")
        proc = subprocess.Popen([driver, f"--port={port}"], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        browser = cls(proc, f"http://127.0.0.1:{port}", profile)
        try:
            browser._wait_ready(timeout)
            browser._new_session(chromium, timeout)
        except BaseException:
            browser.close()
            raise
        return browser

    # -- wire --------------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict | None = None, timeout: float = 60.0):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json; charset=utf-8"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                reply = json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            reply = json.loads(e.read() or b"{}")
            value = reply.get("value", {})
            raise WebDriverError(f"{method} {path}: {value.get('error')}: {value.get('message', '')[:2000]}") from None
        return reply.get("value")

    def _session_call(self, method: str, path: str, body: dict | None = None, timeout: float = 60.0):
        return self._call(method, f"/session/{self.session}{path}", body, timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromedriver exited with code {self.proc.returncode}: {self.driver_log()}")
            try:
                if self._call("GET", "/status", timeout=2).get("ready"):
                    return
            except (OSError, WebDriverError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"chromedriver not ready after {timeout:.0f} s: {self.driver_log()}")

    def _new_session(self, chromium: str, timeout: float) -> None:
        args = CHROME_ARGS + [f"--user-data-dir={Path(self.profile.name) / 'profile'}"]
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"script": int(timeout * 1000), "pageLoad": int(timeout * 1000)},
        }}}
        self.session = self._call("POST", "/session", caps, timeout=timeout + 30)["sessionId"]

    # -- commands ----------------------------------------------------------------------------------------
    def get(self, url: str) -> None:
        self._session_call("POST", "/url", {"url": url})

    def execute(self, script: str, *args, timeout: float = 60.0):
        """Run a function body in the page; a returned Promise is awaited (script timeout: see start)."""
        return self._session_call("POST", "/execute/sync", {"script": script, "args": list(args)}, timeout)

    def wait_for(self, script: str, timeout: float, poll: float = 0.1, what: str = ""):
        """Evaluate `script` until it returns something truthy; TimeoutError naming `what` otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.execute(script)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {what or script}")
            time.sleep(poll)

    def drag(self, x: float, y: float, dx: float, dy: float, steps: int = 10, step_ms: int = 30) -> None:
        """Press the mouse at viewport (x, y), move by (dx, dy) in `steps` moves, release."""
        moves = [{"type": "pointerMove", "duration": step_ms, "origin": "viewport",
                  "x": int(x + dx * (i + 1) / steps), "y": int(y + dy * (i + 1) / steps)} for i in range(steps)]
        actions = [{"type": "pointerMove", "duration": 0, "origin": "viewport", "x": int(x), "y": int(y)},
                   {"type": "pointerDown", "button": 0}, *moves, {"type": "pointerUp", "button": 0}]
        self._session_call("POST", "/actions", {"actions": [
            {"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": actions}]})
        self._session_call("DELETE", "/actions")

    def screenshot(self, path: str | Path) -> Path:
        """Save a PNG of the viewport."""
        import base64
        Path(path).write_bytes(base64.b64decode(self._session_call("GET", "/screenshot")))
        return Path(path)

    def console_log(self) -> list[str]:
        """The page's console messages so far (chromedriver's legacy log endpoint), for failure reports."""
        try:
            entries = self._session_call("POST", "/se/log", {"type": "browser"}, timeout=10) or []
        except (OSError, WebDriverError):
            return []
        return [f"{e.get('level')}: {e.get('message')}" for e in entries]

    def driver_log(self, tail: int = 2000) -> str:
        try:
            return (Path(self.profile.name) / "chromedriver.log").read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    # -- teardown ----------------------------------------------------------------------------------------
    def close(self) -> None:
        if self.session is not None:
            try:
                self._session_call("DELETE", "", timeout=10)
            except (OSError, WebDriverError):
                pass
            self.session = None
        kill_group(self.proc)
        self.profile.cleanup()

    def __enter__(self) -> "Chrome":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
