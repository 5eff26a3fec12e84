"""viewer/static/splat_gl.js (the browser's WebGL2 splat renderer) against the engine's CPU rasterizer, in headless
Chromium (WebGL2 from SwiftShader, software GL, which the `chrome` fixture's flags already give): the same avatar,
motion and camera rendered by `engine.view.AvatarView.splat` (decoder deformation, limb bones, facing cull,
cuda_ext rasterization) and by the page tests/web_splat/index.html must agree on the uint8 frame at PSNR >= 30 dB,
and >= 50 dB with the float32 accumulation target (see MIN_PSNR).

Cases: a random scene (a few hundred Gaussians, random everything, some normals zero, some behind the near plane
or outside the view, bones with children) at 64 x 48 with a non-square K, at rest and fully deformed (motion,
every decoder delta, bone rotations), also with the RGBA16F and RGBA8 fallback targets; its CPU side alone
(deformed means, facing cull, depth order of splat_sort.js); the personalized bundled photo at 128 x 128 at rest,
with a few mm of random motion, from a camera orbited 60 degrees, and with a raised arm plus decoder deltas; and
the per-frame timings, printed. The page gets its arrays as base64 of their little-endian bytes inside the
WebDriver JSON (exact float32 values, and several times smaller than number lists).

Skipped without chromium + chromedriver; the photo cases without mediapipe (personalize needs it).
"""
from __future__ import annotations

import base64
import functools
import http.server
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from cuda_ext.reference import SH_C0
from engine.avatar.bundle import Avatar, PhotoCamera
from engine.avatar.limbs import BONES, LimbRig
from engine.deform.decoder import DecoderConfig, GaussianDecoder
from engine.render.away import AWAY_DEG, NEAR_DEG
from engine.render.camera import look_at
from engine.render.gaussians import Gaussians
from engine.render.splat import facing
from engine.view import AvatarView

ROOT = Path(__file__).resolve().parent.parent
PAGE = "/tests/web_splat/index.html"
# Required agreement: 30 dB at least (the brief), 50 dB with a float32 accumulation target, where the renderer
# matches to within rounding (measured above 70 dB; 50 dB still lets two thirds of the channels differ by one)
# and where 30 dB would pass a wrong sign on a rotation or log-scale delta or on the bone offsets' depths.
MIN_PSNR, MIN_PSNR_FLOAT32 = 30.0, 50.0
NO_BONE = 255


# ------------------------------------------------------------------------------------------------ conversion
def b64(array: np.ndarray | torch.Tensor, dtype: str) -> dict:
    """An array as the page's {dtype, b64}: flattened, cast to f32 / u16 / u8, little-endian bytes."""
    np_type = {"f32": "<f4", "u16": "<u2", "u8": "u1"}[dtype]
    a = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    return {"dtype": dtype, "b64": base64.b64encode(np.ascontiguousarray(a, dtype=np_type).tobytes()).decode()}


def web_avatar(avatar: Avatar) -> dict:
    """The avatar as SplatRenderer.setAvatar takes it: colours from the DC SH term (SH_C0 dc + 0.5, unclamped),
    its colour away from the photo camera where it has one (engine/render/away.py), and each bone Gaussian's bone,
    second bone, blend share and offset from its bone from a LimbRig of the whole avatar (per Gaussian, so the
    same as the rig of any view's subset)."""
    g = avatar.gaussians
    n, K, J, B = len(g), avatar.particles.shape[0], avatar.skin_index.shape[1], len(BONES)
    bone, other = np.full(n, NO_BONE, np.uint8), np.full(n, B, np.uint8)
    share, offset = np.zeros(n, np.float32), np.zeros((n, 3), np.float32)
    if avatar.bones is not None:
        rig = LimbRig(avatar.particles, avatar.particle_names, g.means, avatar.bones)
        if rig:
            rows = rig.rows.numpy()
            bone[rows], other[rows] = rig.bone.numpy(), rig.other.numpy()
            share[rows], offset[rows] = rig.share[:, 0].numpy(), rig.offset.numpy()
    normals = avatar.normals if avatar.normals is not None else torch.zeros(n, 3)
    away = avatar.away_colour()
    looks = {} if away is None else {"awayColors": b64(SH_C0 * away.dc + 0.5, "f32"), "photoEye": b64(away.eye, "f32"),
                                     "awayDeg": b64(np.array([NEAR_DEG, AWAY_DEG]), "f32")}
    return {"n": n, "K": K, "J": J, "B": B, **looks,
            "means": b64(g.means, "f32"), "quats": b64(g.quats, "f32"), "scales": b64(g.scales, "f32"),
            "opacities": b64(g.opacities, "f32"), "colors": b64(SH_C0 * g.sh[:, 0] + 0.5, "f32"),
            "normals": b64(normals, "f32"), "skinIndex": b64(avatar.skin_index, "u16"),
            "skinWeight": b64(avatar.skin_weight, "f32"), "bone": b64(bone, "u8"), "other": b64(other, "u8"),
            "share": b64(share, "f32"), "offset": b64(offset, "f32")}


def web_frame(avatar: Avatar, decoder: GaussianDecoder, motion: torch.Tensor, negate: tuple[int, ...] = ()) -> dict:
    """One frame's deformation inputs from the decoder and particle motion [K, 3] (world): translation = motion +
    d_mean, deltas = the other 10 channels (colour as RGB, not divided by SH_C0; null when all zero), bones =
    LimbRig.rotations (null without bones), with the rows `negate` negated (q and -q are one rotation)."""
    with torch.no_grad():
        deltas = decoder(motion[None])[0]                                                # [K, 13]
        bones = None
        if avatar.bones is not None:
            rig = LimbRig(avatar.particles, avatar.particle_names, avatar.gaussians.means, avatar.bones)
            bones = rig.rotations(motion) if rig else None
        if bones is not None and negate:
            bones[list(negate)] *= -1
    rest = deltas[:, 3:]
    return {"translation": b64(motion + deltas[:, 0:3], "f32"),
            "deltas": b64(rest, "f32") if bool(rest.any()) else None,
            "bones": b64(bones, "f32") if bones is not None else None}


def web_camera(viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int, background: float) -> dict:
    return {"viewmat": b64(viewmat, "f32"), "fx": float(K[0, 0]), "fy": float(K[1, 1]), "cx": float(K[0, 2]),
            "cy": float(K[1, 2]), "width": width, "height": height, "background": background}


def reference(avatar, decoder, motion, viewmat, K, width, height, background) -> np.ndarray:
    """The engine's frame [H, W, 3] uint8, as engine/runtime.py render_motion makes it."""
    with torch.no_grad():
        rgb, _, _ = AvatarView(avatar, viewmat, K, width, height, background).splat(decoder, motion)
    return rgb.clamp(0, 1).mul(255).add(0.5).to(torch.uint8).numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


# --------------------------------------------------------------------------------------------------- fixtures
class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def page(chrome):
    """The test page open in the module's Chromium, served with the repository root over a local HTTP server
    (ES modules need http), and its SplatRenderer created."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(ROOT)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        chrome.get(f"http://127.0.0.1:{server.server_address[1]}{PAGE}")
        chrome.wait_for("return window.splatReady === true", 30, what="the splat test page's module")
        info = chrome.execute("return window.splat.init()")
        assert info["ok"], (f"SplatRenderer could not start: {info.get('error')} (headless Chromium gets WebGL2 "
                            "from SwiftShader; newer builds need --enable-unsafe-swiftshader)")
        print(f"\nWebGL2 renderer: {info['gl']}, accumulation target {info['stats']['target']}")
        chrome.min_psnr = MIN_PSNR_FLOAT32 if info["stats"]["target"] == "RGBA32F" else MIN_PSNR
        yield chrome
    finally:
        server.shutdown()
        server.server_close()


def browser_frame(page, **args) -> tuple[np.ndarray, dict]:
    """window.splat.run(args) -> (RGB [H, W, 3] uint8, the renderer's stats)."""
    out = page.execute("return window.splat.run(arguments[0])", args)
    cam = args["camera"]
    rgba = np.frombuffer(base64.b64decode(out["pixels"]), np.uint8).reshape(cam["height"], cam["width"], 4)
    return rgba[..., :3], out["stats"]


def check(page, name: str, got: np.ndarray, want: np.ndarray, stats: dict) -> float:
    p, floor = psnr(got, want), page.min_psnr
    diff = np.abs(got.astype(int) - want.astype(int))
    print(f"{name}: PSNR {p:.1f} dB, max |diff| {diff.max()}, mean |diff| {diff.mean():.3f}, "
          f"visible {stats['visible']} of {stats['gaussians']}")
    assert p >= floor, f"{name}: PSNR {p:.1f} dB < {floor} (max |diff| {diff.max()})"
    return p


def random_head(decoder: GaussianDecoder, seed: int, mean_scale: float = 0.002, scale: float = 0.02) -> None:
    """Small random weights in the decoder's zero-initialised head, so every delta channel is nonzero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        per_channel = torch.full((decoder.head.out_features, 1), scale)
        per_channel[0:3] = mean_scale
        decoder.head.weight.copy_(torch.randn(decoder.head.weight.shape, generator=gen) * per_channel)
        decoder.head.bias.copy_(torch.randn(decoder.head.bias.shape, generator=gen) * per_channel[:, 0])


# ------------------------------------------------------------------------------------------- a: random scene
RANDOM_NAMES = ["face:0", "face:6", "face:12", "face:18", "face:24",
                "pose:11", "pose:12", "pose:13", "pose:14", "pose:16", "pose:23", "pose:24"]


def random_scene(seed: int = 0, n: int = 400, J: int = 3) -> tuple[Avatar, torch.Tensor]:
    """(n random Gaussians in front of the camera, its viewmat): a few at or behind the near plane, 8 large ones
    outside the field of view, 6 opaque black ones in front, random skinning onto 12 particles, a quarter of the
    normals zero, bones 0 (with its child 1) and 2 on about a third."""
    gen = torch.Generator().manual_seed(seed)
    u = lambda *shape: torch.rand(*shape, generator=gen)
    viewmat = look_at(torch.tensor([0.3, -0.2, -0.5]), torch.tensor([0.0, 0.1, 2.5]))
    means = torch.stack([u(n) * 2.6 - 1.3, u(n) * 2.0 - 1.0, 1.5 + 2.5 * u(n)], 1)
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=1)
    scales = torch.exp(math.log(0.02) + u(n, 3) * math.log(10.0))
    opacities = 0.05 + 0.95 * u(n)
    colors = u(n, 3) * 1.3 - 0.15                                                         # some outside [0, 1]
    normals = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=1)
    normals[u(n) < 0.25] = 0
    K = len(RANDOM_NAMES)
    particles = torch.stack([u(K) * 2.0 - 1.0, u(K) * 1.6 - 0.8, 2.0 + u(K)], 1)
    skin_index = torch.randint(0, K, (n, J), generator=gen)
    w = u(n, J) + 0.1
    skin_weight = w / w.sum(1, keepdim=True)
    bones = torch.tensor([0, 1, 2, -1, -1, -1])[torch.randint(0, 6, (n,), generator=gen)]

    # special ones, placed in camera coordinates
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    means[:6] = (torch.tensor([[0.1, 0.0, -0.3], [0.0, 0.1, -0.01], [0.05, 0.0, 0.005], [0.0, 0.02, 0.02],
                               [0.1, -0.1, 0.1], [-0.1, 0.1, 0.3]]) - t) @ R           # near plane and behind
    normals[:6] = 0.0
    # large ones outside the field of view, near the camera, long along the view axis (where the 1.3x clamp of
    # the Jacobian's view direction changes their footprint most)
    z = 0.8 + 0.4 * u(8)
    cam = torch.stack([z * torch.tensor([1.2, -1.2, 0.0, 0.1, 0.9, -0.9, 1.1, -1.0]),
                       z * torch.tensor([0.1, -0.2, 1.2, -1.2, 0.8, -0.8, 0.9, -0.9]), z], 1)
    means[6:14] = (cam - t) @ R
    quats[6:14] = rotmat_to_quat(R.T)                                                   # camera axes
    scales[6:14] = torch.tensor([0.04, 0.04, 0.5])
    opacities[6:14], normals[6:14] = 0.9, 0.0
    # opaque and black, in front of the rest: their centres show the 0.99 cap on alpha
    cam = torch.tensor([[-0.3, -0.2, 1.4], [0.0, 0.15, 1.4], [0.3, -0.1, 1.4], [-0.2, 0.2, 1.5],
                        [0.25, 0.2, 1.5], [0.05, -0.25, 1.5]])
    means[14:20], scales[14:20], opacities[14:20] = (cam - t) @ R, 0.03, 1.0
    colors[14:20], normals[14:20] = 0.0, 0.0
    Kmat = torch.tensor([[70.0, 0, 31.5], [0, 60.0, 25.0], [0, 0, 1]])
    sh = ((colors - 0.5) / SH_C0)[:, None]
    avatar = Avatar(Gaussians(means, quats, scales, opacities, sh), torch.zeros(n, dtype=torch.long), particles,
                    torch.zeros(K, dtype=torch.long), RANDOM_NAMES, skin_index, skin_weight,
                    PhotoCamera(Kmat, viewmat, 64, 48), normals=normals, bones=bones)
    return avatar, viewmat


def rotmat_to_quat(R: torch.Tensor) -> torch.Tensor:
    """A rotation matrix [3, 3] -> its unit quaternion [4] wxyz (for a matrix far from a half turn)."""
    w = 0.5 * torch.sqrt(1 + R[0, 0] + R[1, 1] + R[2, 2])
    return torch.stack([w, (R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w)])


@pytest.fixture(scope="module")
def scene():
    """The random scene, its viewmat, and everything at once for a frame: motion on every particle, the elbow
    and wrist swung (bones turn), a decoder head giving every delta channel."""
    avatar, viewmat = random_scene()
    decoder = GaussianDecoder(DecoderConfig(n_particles=len(RANDOM_NAMES))).eval()
    random_head(decoder, seed=2, mean_scale=0.01, scale=0.05)
    motion = torch.randn(len(RANDOM_NAMES), 3, generator=torch.Generator().manual_seed(1)) * 0.02
    motion[RANDOM_NAMES.index("pose:14")] += torch.tensor([0.15, -0.2, 0.05])
    motion[RANDOM_NAMES.index("pose:16")] += torch.tensor([-0.1, 0.1, 0.0])
    return avatar, viewmat, decoder, motion


def test_random_scene(page, scene):
    """At rest over white, then deformed over grey. The float32 target composites in the reference's order
    with the same float32 inputs, so here the frames must be equal up to one level per channel."""
    avatar, viewmat, decoder, motion = scene
    K, W, H = avatar.camera.K, 64, 48
    exact = page.min_psnr == MIN_PSNR_FLOAT32
    rest_decoder = GaussianDecoder(DecoderConfig(n_particles=len(RANDOM_NAMES))).eval()
    got, stats = browser_frame(page, avatar=web_avatar(avatar), frame=None, camera=web_camera(viewmat, K, W, H, 1.0))
    still = reference(avatar, rest_decoder, torch.zeros_like(motion), viewmat, K, W, H, 1.0)
    assert still.std() > 20, "the scene should fill the picture with varied colours"
    check(page, "random scene, rest", got, still, stats)
    assert not exact or np.abs(got.astype(int) - still).max() <= 1

    # bone rows 1 (a child bone) and 10 (the torso) negated: the blend must flip them onto the other's side
    frame = web_frame(avatar, decoder, motion, negate=(1, 10))
    assert frame["deltas"] is not None and frame["bones"] is not None
    got, stats = browser_frame(page, frame=frame, camera=web_camera(viewmat, K, W, H, 0.3))
    want = reference(avatar, decoder, motion, viewmat, K, W, H, 0.3)
    assert psnr(want, reference(avatar, rest_decoder, torch.zeros_like(motion), viewmat, K, W, H, 0.3)) < 20, \
        "the deformation should change the picture"
    check(page, "random scene, deformed", got, want, stats)
    assert not exact or np.abs(got.astype(int) - want).max() <= 1


def test_cpu_side(page, scene):
    """splat_sort.js alone: the deformed means (skinning + bones) against the engine's, the facing cull
    against engine.render.splat.facing, and the back-to-front order against a stable sort of the depths."""
    avatar, viewmat, decoder, motion = scene
    out = page.execute("return window.splat.cpu(arguments[0])",
                       {"avatar": web_avatar(avatar), "frame": web_frame(avatar, decoder, motion, negate=(1, 10)),
                        "viewmat": b64(viewmat, "f32")})
    means = np.frombuffer(base64.b64decode(out["means"]), np.float32).reshape(-1, 3)
    facing_js = np.frombuffer(base64.b64decode(out["facing"]), np.uint32)
    order_js = np.frombuffer(base64.b64decode(out["order"]), np.uint32)
    with torch.no_grad():
        g = decoder.deform(avatar.gaussians, avatar.skin_index, avatar.skin_weight, motion)
        g = LimbRig(avatar.particles, avatar.particle_names, avatar.gaussians.means, avatar.bones).apply(g, motion)
    err = np.abs(means - g.means.numpy()).max()
    print(f"deformed means: max |JS - engine| {err:.2e}")
    assert err < 1e-5
    keep = facing(avatar.normals, avatar.gaussians.means, viewmat).nonzero().squeeze(1).numpy()
    np.testing.assert_array_equal(facing_js, keep)
    depth = (g.means[keep] @ viewmat[2, :3] + viewmat[2, 3]).numpy()
    front = keep[depth > 0.01][np.argsort(depth[depth > 0.01], kind="stable")]
    np.testing.assert_array_equal(order_js, front[::-1])


def test_fallback_targets(page, scene):
    """The accumulation targets a browser without float blending (RGBA16F) or without float colour buffers
    (RGBA8) falls back to still pass the brief's 30 dB on the deformed random scene."""
    avatar, viewmat, decoder, motion = scene
    K, W, H = avatar.camera.K, 64, 48
    want = reference(avatar, decoder, motion, viewmat, K, W, H, 0.3)
    frame = web_frame(avatar, decoder, motion)
    try:
        for target in ("RGBA16F", "RGBA8"):
            info = page.execute("return window.splat.init(arguments[0])", {"target": target})
            assert info["ok"] and info["stats"]["target"] == target, info
            got, _ = browser_frame(page, avatar=web_avatar(avatar), frame=frame,
                                   camera=web_camera(viewmat, K, W, H, 0.3))
            p = psnr(got, want)
            print(f"random scene, deformed, {target} target: PSNR {p:.1f} dB, "
                  f"max |diff| {np.abs(got.astype(int) - want).max()}")
            assert p >= MIN_PSNR
    finally:
        assert page.execute("return window.splat.init()")["ok"]


# ------------------------------------------------------------------------------------------ b: the photo avatar
@pytest.fixture(scope="module")
def astronaut():
    pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
    from engine.avatar.personalize import PersonalizeConfig, personalize
    return personalize(ROOT / "assets" / "astronaut.png", PersonalizeConfig(max_side=160, fit_steps=5),
                       progress=False)


def orbit_viewmat(avatar: Avatar, yaw_deg: float) -> torch.Tensor:
    """engine/runtime.py AvatarEngine.set_orbit(yaw_deg) from the photo camera (pitch 0, zoom 1)."""
    g = avatar.gaussians
    pivot = torch.tensor([0.0, 0.0, float(g.means[g.opacities > 0.5, 2].median())])
    a = math.radians(yaw_deg)
    eye = pivot + float(pivot[2]) * torch.tensor([math.sin(a), 0.0, -math.cos(a)])
    return look_at(eye, pivot)


def test_photo_avatar(page, astronaut):
    avatar, W, H = astronaut, 128, 128
    K, photo = avatar.camera.scaled_K(W, H), avatar.camera.viewmat.float()
    Kp = avatar.particles.shape[0]
    decoder = GaussianDecoder(DecoderConfig(n_particles=Kp)).eval()
    rest = torch.zeros(Kp, 3)

    got, stats = browser_frame(page, avatar=web_avatar(avatar), frame=None,
                               camera=web_camera(photo, K, W, H, 1.0))
    still = reference(avatar, decoder, rest, photo, K, W, H, 1.0)
    check(page, "photo avatar, rest", got, still, stats)

    motion = torch.randn(Kp, 3, generator=torch.Generator().manual_seed(3)) * 0.003     # a few mm everywhere
    frame = web_frame(avatar, decoder, motion)
    got, stats = browser_frame(page, frame=frame, camera=web_camera(photo, K, W, H, 1.0))
    want = reference(avatar, decoder, motion, photo, K, W, H, 1.0)
    print(f"  (random motion vs rest: PSNR {psnr(want, still):.1f} dB)")
    check(page, "photo avatar, random motion", got, want, stats)

    orbit = orbit_viewmat(avatar, 60.0)
    got, stats = browser_frame(page, camera=web_camera(orbit, K, W, H, 0.5))
    check(page, "photo avatar, orbit 60", got, reference(avatar, decoder, motion, orbit, K, W, H, 0.5), stats)

    # within the band where the edge's colour fades from the photo's to the away colour (engine/render/away.py)
    orbit = orbit_viewmat(avatar, 0.5 * (NEAR_DEG + AWAY_DEG))
    got, stats = browser_frame(page, camera=web_camera(orbit, K, W, H, 0.5))
    check(page, "photo avatar, orbit in the fade", got, reference(avatar, decoder, motion, orbit, K, W, H, 0.5), stats)


def test_photo_avatar_raised_arm(page, astronaut):
    """The right arm half raised (engine.motion.versa.arms.raise_arm: the limb bones turn) with every decoder
    delta nonzero, from the photo camera and from 30 degrees to the side."""
    avatar, W, H = astronaut, 128, 128
    if avatar.bones is None or not bool((avatar.bones >= 0).any()):
        pytest.skip("this avatar has no limb bones")
    from engine.motion.versa.arms import raise_arm
    K, photo = avatar.camera.scaled_K(W, H), avatar.camera.viewmat.float()
    Kp = avatar.particles.shape[0]
    arm = raise_arm(avatar.particles, avatar.particle_names, "right", torch.tensor([0.6]))
    assert arm is not None
    motion = arm[0].float() + torch.randn(Kp, 3, generator=torch.Generator().manual_seed(4)) * 0.002
    decoder = GaussianDecoder(DecoderConfig(n_particles=Kp)).eval()
    random_head(decoder, seed=5)
    frame = web_frame(avatar, decoder, motion)
    assert frame["deltas"] is not None and frame["bones"] is not None

    got, stats = browser_frame(page, avatar=web_avatar(avatar), frame=frame, camera=web_camera(photo, K, W, H, 1.0))
    want = reference(avatar, decoder, motion, photo, K, W, H, 1.0)
    still = reference(avatar, decoder, torch.zeros(Kp, 3), photo, K, W, H, 1.0)
    assert psnr(want, still) < 25, "the raised arm should change the picture"
    check(page, "photo avatar, raised arm + deltas", got, want, stats)

    side = orbit_viewmat(avatar, -30.0)
    got, stats = browser_frame(page, camera=web_camera(side, K, W, H, 1.0))
    want = reference(avatar, decoder, motion, side, K, W, H, 1.0)
    check(page, "photo avatar, raised arm, orbit -30", got, want, stats)


def timing_line(out: dict) -> str:
    return ", ".join(f"{k} {v:.2f} ms" for k, v in out["ms"].items()) + f"; visible {out['stats']['visible']}"


def test_frame_timing_photo(page, astronaut):
    """Per-frame cost in SwiftShader, printed (no bound: software GL on a shared machine): the photo avatar at
    512 x 512 with every delta, setFrame + render (CPU: deform + sort + submit) + readPixels (waits for the GPU)."""
    avatar, W, H = astronaut, 512, 512
    K, photo = avatar.camera.scaled_K(W, H), avatar.camera.viewmat.float()
    Kp = avatar.particles.shape[0]
    decoder = GaussianDecoder(DecoderConfig(n_particles=Kp)).eval()
    random_head(decoder, seed=6)
    gen = torch.Generator().manual_seed(7)
    frames = [web_frame(avatar, decoder, torch.randn(Kp, 3, generator=gen) * 0.003) for _ in range(2)]
    browser_frame(page, avatar=web_avatar(avatar), frame=None, camera=web_camera(photo, K, W, H, 1.0))
    out = page.execute("return window.splat.time(arguments[0])",
                       {"frames": frames, "camera": web_camera(photo, K, W, H, 1.0), "count": 10})
    print(f"photo avatar ({len(avatar.gaussians)} Gaussians) at {W}x{H}: {timing_line(out)}")
    assert out["stats"]["visible"] > 0


def test_frame_timing_100k(page):
    """The same for a synthetic avatar of 100k Gaussians (made in the page), mostly for the CPU side."""
    n = 100_000
    assert page.execute("return window.splat.synthetic(arguments[0])", {"n": n, "K": 143, "J": 4})["n"] == n
    camera = {"viewmat": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1], "fx": 300.0, "fy": 300.0, "cx": 64.0,
              "cy": 64.0, "width": 128, "height": 128, "background": 1.0}
    out = page.execute("return window.splat.time(arguments[0])", {"frames": None, "camera": camera, "count": 5})
    print(f"synthetic {n} Gaussians at 128x128: {timing_line(out)}")
    assert out["stats"]["visible"] == n
