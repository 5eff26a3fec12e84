"""The browser viewer (viewer/static) against a real `audioavatar serve`, in headless Chromium.

Steps: personalize the bundled photo (small and fast) -> start `python -m audioavatar serve` on a free port ->
open the page through chromedriver (W3C WebDriver over HTTP, tests/webdriver_client.py) -> idle frames arrive
and are drawn -> 2 s of synthetic speech go through window.aa.sendSamples -> frames keep coming, flagged
speaking, the picture moves -> a mouse drag orbits the camera and the server renders another view -> the Stop
button interrupts speech half-way and idle frames go on -> the (fake) microphone streams speech too.

Skipped when chromium or chromedriver is absent (Debian: apt-get install chromium chromium-driver), or without
mediapipe (personalize needs it).
"""
from __future__ import annotations

import math
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from webdriver_client import BrowserMissing, find_browser, kill_group

ROOT = Path(__file__).resolve().parent.parent
SERVER_START_TIMEOUT = 120      # the first start may JIT-build the C++ splatting kernels
SNAPSHOT_SIDE = 48

# The picture as the user sees it: the fitted image area of the canvas, downscaled, as grey levels 0..255.
SNAPSHOT_JS = f"""
const c = window.aa.canvas, st = window.aa.stats;
const s = Math.min(c.width / st.width, c.height / st.height);
const w = st.width * s, h = st.height * s;
const small = document.createElement("canvas");
small.width = small.height = {SNAPSHOT_SIDE};
const g = small.getContext("2d");
g.drawImage(c, (c.width - w) / 2, (c.height - h) / 2, w, h, 0, 0, {SNAPSHOT_SIDE}, {SNAPSHOT_SIDE});
const px = g.getImageData(0, 0, {SNAPSHOT_SIDE}, {SNAPSHOT_SIDE}).data;
const out = [];
for (let i = 0; i < px.length; i += 4) out.push(Math.round((px[i] + px[i + 1] + px[i + 2]) / 3));
return out;
"""

# 2 s of speech-like sound at 48 kHz: a 110-150 Hz voice with vowel-like harmonics, in 4 Hz syllables. Made
# ahead of sending: the loop blocks the page for a moment, which would make a frame late.
MAKE_SPEECH_JS = """
const rate = 48000, n = 2 * rate, x = new Float32Array(n);
let phase = 0;
for (let i = 0; i < n; i++) {
  const t = i / rate;
  const f0 = 130 + 20 * Math.sin(2 * Math.PI * 1.3 * t);
  phase += 2 * Math.PI * f0 / rate;
  let v = 0;
  for (let k = 1; k <= 12; k++) {
    const f = k * f0, formants = Math.exp(-(((f - 700) / 300) ** 2)) + 0.6 * Math.exp(-(((f - 1200) / 400) ** 2));
    v += (0.15 + formants) * Math.sin(k * phase) / k;
  }
  const syllable = Math.max(0, Math.sin(2 * Math.PI * 4 * t));
  x[i] = 0.35 * v * syllable * (t > 0.1 && t < 1.9 ? 1 : 0);
}
window.__speechSamples = x;
return n;
"""
START_SPEECH_JS = """
window.__speech = window.aa.sendSamples(window.__speechSamples, 48000)
  .then(r => ({ok: true, r}), e => ({ok: false, e: String(e)}));
return true;
"""


def stats(browser) -> dict:
    return browser.execute("return Object.assign({}, window.aa.stats, {errors: [...window.aa.stats.errors]})")


def snapshot(browser) -> list[int]:
    return browser.execute(SNAPSHOT_JS)


def mean_abs_diff(a: list[int], b: list[int]) -> float:
    assert len(a) == len(b) == SNAPSHOT_SIDE ** 2
    return sum(abs(x - y) for x, y in zip(a, b)) / len(a)


def wait_frames(browser, more: int, timeout: float) -> dict:
    """Wait until `more` further frames have been drawn; returns the stats then."""
    target = stats(browser)["framesDrawn"] + more
    browser.wait_for(f"return window.aa.stats.framesDrawn >= {target}", timeout, what=f"{more} more frames drawn")
    return stats(browser)


# ---- fixtures ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser_paths():
    try:
        return find_browser()
    except BrowserMissing as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def avatar_dir(browser_paths, tmp_path_factory):
    pytest.importorskip("mediapipe")
    from engine.avatar.personalize import PersonalizeConfig, personalize

    out = tmp_path_factory.mktemp("avatar")
    personalize(ROOT / "assets" / "astronaut.png", PersonalizeConfig(max_side=160, fit_steps=5),
                progress=False).save_pretrained(out)
    return out


def _read_lines(stream, lines: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        lines.put(line)
    lines.put(None)


@dataclass
class Server:
    url: str
    log: Path         # its stderr

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]


@pytest.fixture(scope="module")
def server(avatar_dir, tmp_path_factory):
    """`audioavatar serve` on a free port (a Server); the process group is killed afterwards."""
    log = tmp_path_factory.mktemp("server") / "stderr.log"
    cmd = [sys.executable, "-m", "audioavatar", "serve", str(avatar_dir),
           "--host", "127.0.0.1", "--port", "0", "--size", "128"]
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True,
                                start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    try:
        yield Server(_wait_serving(proc, lines, log), log)
    finally:
        kill_group(proc)


def _wait_serving(proc: subprocess.Popen, lines: queue.Queue, log: Path) -> str:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line.rstrip())
        if line.startswith("serving http://"):
            return line.split()[1]
    proc.poll()
    raise RuntimeError(f"server did not print 'serving http://...' within {SERVER_START_TIMEOUT} s "
                       f"(exit code {proc.returncode}); stdout: {seen[-10:]}; stderr tail: "
                       f"{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def browser(browser_paths, chrome):
    return chrome


# ---- the test ----------------------------------------------------------------------------------------------
def test_viewer_plays_speech_and_orbits(browser, server):
    t_start = time.monotonic()
    try:
        _run_viewer_checks(browser, server.url)
    except BaseException:
        print("browser console:\n" + "\n".join(browser.console_log()[-40:]))
        print("server stderr (tail):\n" + server.log_tail())
        raise
    print(f"browser test body: {time.monotonic() - t_start:.1f} s")


def _run_viewer_checks(browser, url: str) -> None:
    # 1. the page connects and idle frames are drawn
    browser.get(url)
    browser.wait_for("return !!(window.aa && window.aa.stats.connected && window.aa.stats.framesReceived > 5)",
                     timeout=30, what="connected and > 5 idle frames")
    idle = wait_frames(browser, 5, timeout=10)
    assert idle["width"] == 128 and idle["height"] == 128, idle
    assert idle["errors"] == [], idle["errors"]

    # 2. how much the idle avatar moves in half a second (breathing, blinking): the noise floor below
    a = snapshot(browser)
    assert max(a) - min(a) > 20, "the canvas shows a blank picture"
    time.sleep(0.5)
    idle_motion = mean_abs_diff(a, snapshot(browser))

    # 3. 2 s of speech, paced in real time: frames keep coming, flagged as speech, and the picture moves
    browser.execute(MAKE_SPEECH_JS)
    before = stats(browser)
    browser.execute(START_SPEECH_JS)
    time.sleep(0.8)
    during_1 = snapshot(browser)
    time.sleep(0.5)
    during_2 = snapshot(browser)
    sent = browser.execute("return window.__speech", timeout=30)
    assert sent["ok"], sent
    time.sleep(0.5)                                     # the last speech frames reach the screen
    after = stats(browser)
    assert after["errors"] == [], after["errors"]
    assert after["framesReceived"] - before["framesReceived"] >= 25, (before, after)
    assert after["framesDrawn"] > before["framesDrawn"] > 0, (before, after)
    assert after["speakingFrames"] - before["speakingFrames"] >= 25, (before, after)
    speech_motion = mean_abs_diff(during_1, during_2)
    assert speech_motion > 0, "the picture did not change while speaking"
    assert after["lastIndex"] > before["lastIndex"]

    # 4. a mouse drag across the canvas orbits the camera: the server renders another view
    rect = browser.execute("const r = window.aa.canvas.getBoundingClientRect();"
                           "return [r.left + r.width / 2, r.top + r.height / 2];")
    before_orbit = snapshot(browser)
    browser.drag(rect[0] - 75, rect[1], 150, 0)         # 150 px at 0.4 deg/px: 60 degrees of yaw
    yaw = browser.execute("return window.aa.camera.yaw")
    assert math.isclose(yaw, 60, abs_tol=2), f"drag gave yaw {yaw}, expected 60"
    wait_frames(browser, 15, timeout=10)                # the new view is rendered, sent and drawn
    orbit_motion = mean_abs_diff(before_orbit, snapshot(browser))
    assert orbit_motion > max(3 * idle_motion, 2.0), \
        f"orbit changed the picture by {orbit_motion:.2f} grey levels, idle motion alone {idle_motion:.2f}"

    # 5. barge-in: the Stop button stops sending and interrupts; the server confirms and frames go on
    browser.execute(START_SPEECH_JS)
    time.sleep(0.6)
    browser.execute("document.getElementById('stop').click()")
    stopped = browser.execute("return window.__speech")
    assert not stopped["ok"] and "stopped" in stopped["e"], stopped
    browser.wait_for("return window.aa.stats.interrupted >= 1", timeout=5, what="the server's 'interrupted' reply")
    wait_frames(browser, 10, timeout=5)

    # 6. the microphone (Chromium's fake device: a beep) goes through the AudioWorklet capture as speech
    mic_before = stats(browser)
    browser.execute("document.getElementById('mic').click()")
    browser.wait_for(f"return window.aa.stats.speakingFrames >= {mic_before['speakingFrames'] + 10}", timeout=5,
                     what="10 speech frames from the microphone")
    browser.execute("document.getElementById('mic').click()")
    final = stats(browser)
    assert final["errors"] == [], final["errors"]
    assert final["connected"], final
    print(f"picture change, in grey levels: idle {idle_motion:.2f}, speech {speech_motion:.2f}, "
          f"orbit {orbit_motion:.2f}; stats {final}")
