"""Client rendering end to end in headless Chromium (software WebGL2): the viewer page at /?render=client against a
real server downloads /avatar.splat, draws the motion the server streams, orbits without asking the server, and
shows its frame rate. Its picture is compared with the server's own render of the same camera and motion:
the rest pose from the photo camera and from an orbit, and a motion message built by the engine (an arm raised,
a decoder with live deltas) passed through the page's own protocol parser.
Skipped without chromium/chromedriver or mediapipe, as tests/test_browser.py is."""
# ruff: noqa: F811  (pytest injects the imported `avatar` fixture by parameter name)
import base64
import math

import numpy as np
import pytest
import torch

pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
from engine.avatar.particles import canonical_slots  # noqa: E402
from engine.runtime import AvatarEngine, EngineConfig  # noqa: E402
from test_server import Running, avatar  # noqa: E402,F401
from viewer.protocol import pack_motion  # noqa: E402

SIZE = 128
MIN_PSNR = 30.0                 # issue 20's bar: the browser's frame vs the server's render of the same camera

# JS run in the page: draw `frame` (null = the rest pose, or a base64 motion message) from an orbit camera at
# SIZE x SIZE with the page's own modules, and return the pixels (RGBA, rows top to bottom) as base64.
DRAW = """
const [b64, yaw, pitch, zoom, size] = arguments;
return (async () => {
const { parseMotion } = await import("./protocol.js");
const { orbitCamera } = await import("./client_render.js");
const c = window.aa.client;
let frame = null;
if (b64 !== null) {
  const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
  frame = parseMotion(bytes.buffer);
}
c.active = false;                                   // the page's own loop stays off while we draw
c.renderer.setFrame(frame);
c.renderer.render(orbitCamera(c.header, { yaw, pitch, zoom }, size, size));
const px = c.renderer.readPixels();
let s = "";
for (let i = 0; i < px.length; i += 0x8000) s += String.fromCharCode(...px.subarray(i, i + 0x8000));
return btoa(s);
})();
"""


def page_pixels(chrome, frame_b64, yaw, pitch=0.0, zoom=1.0) -> np.ndarray:
    b64 = chrome.execute(DRAW, frame_b64, yaw, pitch, zoom, SIZE)
    return np.frombuffer(base64.b64decode(b64), np.uint8).reshape(SIZE, SIZE, 4)[..., :3]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def raised_arm(avatar, engine) -> torch.Tensor:
    """Canonical motion [K_c, 3]: small random motion everywhere, the right elbow and wrist lifted."""
    view = engine.view()
    m = torch.randn(len(canonical_slots()), 3, generator=torch.Generator().manual_seed(3)) * 0.03
    for i, name in enumerate(avatar.particle_names):
        if name in ("pose:14", "pose:16"):
            m[view.slots[i]] += torch.tensor([-0.4, -1.2, 0.0]) * (2 if name == "pose:16" else 1)
    return m


def test_client_mode_page_matches_the_server_and_orbits_locally(avatar, chrome):
    srv = Running(avatar)
    try:
        chrome.get(f"http://127.0.0.1:{srv.server.port}/?render=client")
        chrome.wait_for("return !!(window.aa && aa.client.header && aa.stats.framesDrawn > 5)", timeout=60,
                        what="the avatar downloaded and motion drawn")
        # the page shows where it renders and its frame rate
        chrome.wait_for("return document.getElementById('overlay').textContent.includes('client (WebGL2)')",
                        timeout=5, what="the overlay names client rendering")
        overlay = chrome.execute("return document.getElementById('overlay').textContent")
        assert "fps" in overlay and "draw" in overlay, overlay
        session = next(iter(srv.server.sessions.values()))
        assert session.render == "client" and session.sent > 5
        viewmat0 = session.engine.viewmat.clone()
        # orbit by dragging: the page redraws from its own camera, the server hears nothing
        draws0 = chrome.execute("return aa.client.drawnKey")
        rect = chrome.execute("const r = aa.canvas.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]")
        chrome.drag(int(rect[0]), int(rect[1]), 120, 0)
        chrome.wait_for("return Math.abs(aa.camera.yaw) > 20 && aa.client.drawnKey.includes(String(aa.camera.yaw))",
                        timeout=10, what="a redraw at the dragged yaw")
        assert chrome.execute("return aa.client.drawnKey") != draws0
        assert torch.equal(session.engine.viewmat, viewmat0)             # no camera message reached the server

        # the page's frames against the server's renders of the same camera
        engine = AvatarEngine(avatar, EngineConfig(width=SIZE, height=SIZE, motion="procedural"))
        zero = torch.zeros(len(canonical_slots()), 3)
        for yaw, pitch, zoom in ((0.0, 0.0, 1.0), (60.0, 10.0, 1.3)):
            engine.set_orbit(yaw, pitch, zoom)
            ref = engine.render_motion(zero)
            got = page_pixels(chrome, None, yaw, pitch, zoom)
            score = psnr(got, ref)
            print(f"rest pose yaw {yaw} pitch {pitch} zoom {zoom}: PSNR {score:.2f} dB")
            assert score >= MIN_PSNR, (yaw, score)
        # a motion message the engine builds (the decoder's head made live, so deltas travel too)
        torch.manual_seed(0)
        torch.nn.init.normal_(engine.decoder.head.weight, std=0.01)
        torch.nn.init.normal_(engine.decoder.head.bias, std=0.01)
        motion = raised_arm(avatar, engine)
        translation, deltas, bones = engine.client_motion(motion)
        message = pack_motion(0, 0.0, 0, False, np.zeros(0, np.int16), translation, bones, deltas)
        engine.set_orbit(-30.0, 0.0, 1.0)
        ref = engine.render_motion(motion)
        got = page_pixels(chrome, base64.b64encode(message).decode(), -30.0)
        score = psnr(got, ref)
        rest = psnr(got, engine.render_motion(zero))
        print(f"moved (arm, deltas) yaw -30: PSNR {score:.2f} dB (vs the rest pose: {rest:.2f} dB)")
        assert score >= MIN_PSNR and rest < score - 3                   # the motion shows, and shows right
    except BaseException:
        print("browser console:\n" + "\n".join(chrome.console_log()[-40:]))
        raise
    finally:
        srv.close()
