"""The web export (engine/avatar/web_export.py) in two third-party 3DGS viewers, in headless Chromium.

An avatar is exported with `export_web_ply`, served with tests/web_viewers/viewer.html and the viewers' npm
packages (tests/web_viewers/package.json: @sparkjsdev/spark and @mkkellogg/gaussian-splats-3d on three) from a
local http server, and photographed through chromedriver (tests/webdriver_client.py) by a camera on the +z
axis looking at the origin with y up, the common three.js convention. Each screenshot must show the avatar
as our own renderer does from the same camera: mediapipe finds a face in it, upright (eyes above the mouth),
at the place and size of the face in our render, and the picture correlates with ours better than with ours
mirrored or upside down.

Skipped without chromium + chromedriver (Debian: apt-get install chromium chromium-driver), without
tests/web_viewers/node_modules (npm ci --prefix tests/web_viewers), or without mediapipe.

As a script, it photographs an avatar bundle in both viewers and prints the checks:
    python tests/test_web_viewers.py AVATAR_DIR OUT_DIR
"""
from __future__ import annotations

import functools
import http.server
import json
import math
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from webdriver_client import Chrome  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "tests" / "web_viewers"
VIEWERS = ("spark", "mkkellogg")
SIZE = 384            # square canvas, pixels
FOV_Y = 30.0          # degrees
MARGIN = 1.1          # camera distance beyond a tight fit of the avatar's radius

# The face in MediaPipe face-mesh indices: eye corners and the mouth's corners and lips.
EYES = (33, 133, 362, 263)
MOUTH = (61, 291, 13, 14)


# ---- serving and photographing ------------------------------------------------------------------------------
class _Handler(http.server.SimpleHTTPRequestHandler):
    """Files of tests/web_viewers at /, those of `files` at /files/; cross-origin isolated (COOP + COEP) so
    that pages may use SharedArrayBuffer, as mkkellogg's viewer does by default."""

    def __init__(self, *args, files: Path, **kwargs):
        self.files = files
        super().__init__(*args, directory=str(WEB), **kwargs)

    def translate_path(self, path: str) -> str:
        if path.startswith("/files/"):
            return str(self.files / Path(path.split("?")[0][len("/files/"):]).name)
        return super().translate_path(path)

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, *args) -> None:
        pass


@contextmanager
def serve(files: Path):
    """An http server on a free local port for tests/web_viewers and `files`; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, files=files))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def web_camera(info: dict) -> tuple[list[float], list[float]]:
    """(eye, target) in the web frame: on +z, looking at the origin, far enough to fit the avatar."""
    dist = MARGIN * info["radius"] / math.sin(math.radians(FOV_Y) / 2)
    return [0.0, 0.0, dist], [0.0, 0.0, 0.0]


def photograph(browser: Chrome, base: str, viewer: str, ply_name: str, eye, target, png: Path,
               timeout: float = 120) -> np.ndarray:
    """Open `viewer` on /files/ply_name, wait until it has drawn, save the canvas as `png`; -> [S, S, 3] uint8."""
    from PIL import Image

    fmt = lambda v: ",".join(f"{x:.6f}" for x in v)  # noqa: E731
    browser.get(f"{base}/viewer.html?viewer={viewer}&ply=files/{ply_name}&eye={fmt(eye)}&target={fmt(target)}"
                f"&fov={FOV_Y}&size={SIZE}")
    state = browser.wait_for("const s = window.viewerState; return s && s.status !== 'loading' ? s : null",
                             timeout, what=f"{viewer} to load and draw {ply_name}")
    if state["status"] != "ready":
        raise AssertionError(f"{viewer}: {state['error']}\nconsole:\n" + "\n".join(browser.console_log()[-20:]))
    browser.screenshot(png)
    img = np.array(Image.open(png).convert("RGB"))[:SIZE, :SIZE]
    Image.fromarray(img).save(png)
    return img


def our_render(avatar, info: dict, eye_web, target_web) -> np.ndarray:
    """Our renderer (normals culling, white background) from the camera the viewers got, mapped back to the
    bundle's frame: p_bundle = diag(1, -1, -1) @ p_web + centre; the web's up (+y) is our -y."""
    from engine.render.camera import intrinsics, look_at
    from engine.render.splat import render_gaussians
    from engine.avatar.web_export import WEB_FROM_WORLD

    centre = torch.tensor(info["centre"])
    eye = WEB_FROM_WORLD @ torch.tensor(eye_web, dtype=torch.float32) + centre
    target = WEB_FROM_WORLD @ torch.tensor(target_web, dtype=torch.float32) + centre
    img, _ = render_gaussians(avatar.gaussians, look_at(eye, target), intrinsics(SIZE, SIZE, FOV_Y), SIZE, SIZE,
                              1.0, avatar.normals)
    return (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()


# ---- checking a picture -------------------------------------------------------------------------------------
def face_of(img: np.ndarray) -> dict | None:
    """MediaPipe's face in img [H, W, 3] uint8 (engine.avatar.landmarks' detector + mesh): its box (x0, y0, x1, y1),
    the mean eye and mouth points, and whether the eyes are above the mouth; None without a face."""
    from engine.avatar.landmarks import face_mesh

    mesh, n = face_mesh(np.ascontiguousarray(img))
    if mesh is None:
        return None
    pts = mesh[:, :2].numpy()
    eyes, mouth = pts[list(EYES)].mean(0), pts[list(MOUTH)].mean(0)
    left, right = pts[[33, 133]].mean(0), pts[[362, 263]].mean(0)     # the person's right eye, then left
    return {"box": [float(v) for v in (*pts.min(0), *pts.max(0))], "eyes": eyes.tolist(), "mouth": mouth.tolist(),
            "upright": bool(mouth[1] - eyes[1] > 0.5 * abs(mouth[0] - eyes[0])), "faces": n,
            "eye_distance": float(np.linalg.norm(left - right))}


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    x, y = a.astype(np.float64).mean(-1).ravel(), b.astype(np.float64).mean(-1).ravel()
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / math.sqrt((x * x).sum() * (y * y).sum() + 1e-12))


def compare(shot: np.ndarray, ours: np.ndarray, our_face: dict | None) -> dict:
    """The checks of one viewer's screenshot against our render from the same camera."""
    face = face_of(shot)
    out = {"face": face, "corr": correlation(shot, ours), "corr_mirrored": correlation(shot, ours[:, ::-1]),
           "corr_upside_down": correlation(shot, ours[::-1])}
    if face and our_face:
        diag = math.dist(our_face["box"][:2], our_face["box"][2:])
        out["face_offset"] = math.dist(face["eyes"], our_face["eyes"]) / diag     # in face-box diagonals
        out["face_scale"] = face["eye_distance"] / our_face["eye_distance"]
    return out


def photograph_bundle(avatar_dir: Path, out_dir: Path, browser: Chrome | None = None) -> dict:
    """Export avatar_dir for the web into out_dir, photograph it in both viewers and with our renderer
    (out_dir/{spark,mkkellogg,ours}.png); -> {"export": ..., "ours": face, viewer: compare(...)}."""
    from PIL import Image

    from engine.avatar.bundle import Avatar
    from engine.avatar.web_export import export_web_ply

    out_dir.mkdir(parents=True, exist_ok=True)
    avatar = Avatar.from_pretrained(avatar_dir)
    info = export_web_ply(avatar, out_dir / "avatar_web.ply")
    eye, target = web_camera(info)
    ours = our_render(avatar, info, eye, target)
    Image.fromarray(ours).save(out_dir / "ours.png")
    result = {"export": info, "ours": face_of(ours)}
    own = browser is None
    browser = Chrome.start() if own else browser
    try:
        with serve(out_dir) as base:
            for viewer in VIEWERS:
                t0 = time.monotonic()
                shot = photograph(browser, base, viewer, "avatar_web.ply", eye, target, out_dir / f"{viewer}.png")
                result[viewer] = compare(shot, ours, result["ours"]) | {"seconds": round(time.monotonic() - t0, 1)}
    finally:
        if own:
            browser.close()
    return result


# ---- the test -----------------------------------------------------------------------------------------------
NODE_FILES = ("three/build/three.module.js", "@sparkjsdev/spark/dist/spark.module.js",
              "@mkkellogg/gaussian-splats-3d/build/gaussian-splats-3d.module.js")


@pytest.fixture(scope="module")
def browser(request):
    """The conftest's headless Chromium, once the pinned web viewers are installed (else the test skips)."""
    missing = [f for f in NODE_FILES if not (WEB / "node_modules" / f).is_file()]
    if missing:
        pytest.skip(f"web viewer packages not installed ({missing[0]} missing): npm ci --prefix tests/web_viewers")
    pytest.importorskip("mediapipe")
    return request.getfixturevalue("chrome")


@pytest.fixture(scope="module")
def avatar_dir(browser, tmp_path_factory):
    """The bundled photo personalized small and fast (as tests/test_browser.py does)."""
    from engine.avatar.personalize import PersonalizeConfig, personalize

    out = tmp_path_factory.mktemp("avatar")
    personalize(ROOT / "assets" / "astronaut.png", PersonalizeConfig(max_side=160, fit_steps=5),
                progress=False).save_pretrained(out)
    return out


@pytest.mark.slow
def test_web_viewers_show_the_avatar_upright(browser, avatar_dir, tmp_path):
    result = photograph_bundle(avatar_dir, tmp_path, browser)
    print(f"screenshots in {tmp_path}\n" + json.dumps(result, indent=1))
    ours = result["ours"]
    assert ours is not None and ours["upright"], f"no upright face in our own render {tmp_path / 'ours.png'}"
    for viewer in VIEWERS:
        r, png = result[viewer], tmp_path / f"{viewer}.png"
        assert r["face"] is not None, f"{viewer}: mediapipe finds no face in {png}"
        assert r["face"]["upright"], f"{viewer}: the face in {png} is not upright: {r['face']}"
        assert r["face_offset"] < 0.1, f"{viewer}: the face is elsewhere than in our render: {r}"
        assert 0.85 < r["face_scale"] < 1.15, f"{viewer}: the face's size differs from our render's: {r}"
        # the whole picture is ours, not mirrored (a mirror would also pass the face checks) nor upside down
        assert r["corr"] > 0.9, f"{viewer}: the picture differs from our render: {r}"
        assert r["corr"] > r["corr_mirrored"] + 0.1 and r["corr"] > r["corr_upside_down"] + 0.3, r


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(json.dumps(photograph_bundle(Path(sys.argv[1]), Path(sys.argv[2])), indent=1))
