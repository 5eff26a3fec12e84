"""Client-side rendering, server side: the packed avatar (engine/avatar/splat_pack.py), the motion message
(viewer/protocol.py) with its G.711 mu-law audio, the engine's per-frame client motion, and a session in
client mode over real sockets (/avatar.splat, gzip, ETag; motion messages instead of JPEG frames).

The deformation a browser applies (translation blend, decoder deltas, limb-bone rotations) is written out here
in numpy from the unpacked arrays, independently of the engine, and compared with the engine's own deformed
Gaussians (AvatarView.splat) for the same motion."""
# ruff: noqa: F811  (pytest injects the imported fixtures by parameter name)
import asyncio
import gzip
import http.client
import json
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
from engine.avatar.particles import canonical_slots  # noqa: E402
from cuda_ext.reference import SH_C0  # noqa: E402
from engine.avatar.splat_pack import pack_avatar, unpack_avatar, unpacked_gaussians  # noqa: E402
from engine.render.splat import facing, splat  # noqa: E402
from engine.runtime import AvatarEngine, EngineConfig  # noqa: E402
from engine.view import AvatarView  # noqa: E402
from test_server import Running, avatar, hello  # noqa: E402,F401
from viewer.protocol import (ProtocolError, mulaw_decode, mulaw_encode, pack_audio, pack_motion,  # noqa: E402
                             parse_control, unpack_motion)


def psnr_uint8(a: torch.Tensor, b: torch.Tensor) -> float:
    q = lambda x: (x.clamp(0, 1) * 255 + 0.5).floor()  # noqa: E731
    mse = float(((q(a) - q(b)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


# ---------------------------------------------------------------------------------------------- the packed avatar
def test_pack_round_trip_keeps_the_avatar(avatar):
    blob = pack_avatar(avatar)
    u = unpack_avatar(blob)
    g = avatar.gaussians
    N = len(g)
    span = (g.means.max(0).values - g.means.min(0).values).numpy()
    assert u["means"].shape == (N, 3)
    assert np.abs(u["means"] - g.means.numpy()).max(0).tolist() <= (span / 65535 * 0.51 + 1e-7).tolist()
    assert np.abs(u["scales"] / g.scales.numpy() - 1).max() < 2e-3                     # uint16 log-scales
    dots = np.abs((u["quats"] * g.quats.numpy() / np.linalg.norm(g.quats.numpy(), axis=1, keepdims=True)).sum(1))
    assert dots.min() > 0.999                                                          # int8 quaternions
    assert np.abs(u["opacities"] - g.opacities.numpy()).max() <= 0.5 / 255 + 1e-6
    away = avatar.away_colour()                                        # the colour away from the photo camera
    assert away is not None and len(away.rows()) > 0
    colors = (SH_C0 * away.dc + 0.5).numpy()
    assert np.abs(u["away_colors"] - colors).max() <= (colors.max() - colors.min()) / 255 * 0.51 + 1e-6
    assert np.allclose(u["header"]["photo_eye"], away.eye.numpy(), atol=1e-6)
    assert np.array_equal(u["skin_index"], avatar.skin_index.numpy())
    w = avatar.skin_weight.numpy()
    span = max(1.0, w.max()) - min(0.0, w.min())                      # the lash band's rows leave [0, 1]
    assert np.abs(u["skin_weight"] - w).max() < 1.5 / 255 * span                       # uint8 over that range
    assert np.allclose(u["skin_weight"].sum(1), 1, atol=1e-5)
    zero = w == 0                     # 0 falls on an exact code: a column a Gaussian does not follow stays unfollowed
    assert zero.any() and np.abs(u["skin_weight"][zero]).max() < 1e-6
    # a row past [0, 1] (an eyelid's lash band: 1.2 on the lid, -0.2 on what holds it) survives the trip
    import dataclasses
    odd = dataclasses.replace(avatar, skin_weight=avatar.skin_weight.clone())
    odd.skin_weight[0] = torch.tensor([1.2, 0.0, 0.0, -0.2])[:odd.skin_weight.shape[1]]
    odd.skin_weight[0, -1] += 1.0 - float(odd.skin_weight[0].sum())
    back = unpack_avatar(pack_avatar(odd))["skin_weight"][0]
    assert np.abs(back - odd.skin_weight[0].numpy()).max() < 1.5 / 255 * 1.4 and abs(back.sum() - 1) < 1e-5
    # the photo view of the packed avatar is the original's, within quantisation
    view = AvatarView.from_photo(avatar, 96, 96)
    keep = facing(avatar.normals, g.means, view.viewmat).nonzero().squeeze(1)
    ref, _ = splat(g.select(keep), view.viewmat, view.K, 96, 96)
    got, _ = splat(unpacked_gaussians(u).select(keep), view.viewmat, view.K, 96, 96)
    assert psnr_uint8(got, ref) > 45
    # bones: the rows on a bone, in order, with the rig's offsets
    if avatar.bones is not None and bool((avatar.bones >= 0).any()):
        on_bone = u["bone"] != 255
        assert np.array_equal(np.nonzero(on_bone)[0], (avatar.bones >= 0).nonzero().squeeze(1).numpy())
        assert u["bone_offset"].shape == (int(on_bone.sum()), 3)


def test_unpack_refuses_a_foreign_or_cut_blob(avatar):
    blob = pack_avatar(avatar)
    with pytest.raises(ValueError, match="magic"):
        unpack_avatar(b"NOTSPLAT" + blob[8:])
    with pytest.raises(ValueError, match="runs past"):
        unpack_avatar(blob[: len(blob) // 2])


# ---------------------------------------------------------------------------------------------- the motion message
def test_mulaw_matches_the_reference_codec():
    audioop = pytest.importorskip("audioop")            # Python <= 3.12 ships the G.711 reference codec
    x = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ref = np.frombuffer(audioop.lin2ulaw(x.tobytes(), 2), np.uint8)
        codes = np.arange(256, dtype=np.uint8)
        ref_dec = np.frombuffer(audioop.ulaw2lin(codes.tobytes(), 2), np.int16)
    assert np.array_equal(mulaw_encode(x), ref)
    assert np.array_equal(mulaw_decode(codes), ref_dec)


def test_motion_message_round_trip_and_errors():
    rng = np.random.default_rng(0)
    t = rng.normal(0, 0.01, (143, 3)).astype(np.float32)
    bones = rng.normal(size=(11, 4)).astype(np.float32)
    bones /= np.linalg.norm(bones, axis=1, keepdims=True)
    deltas = rng.normal(0, 0.05, (143, 10)).astype(np.float32)
    audio = (rng.normal(0, 3000, 640)).astype(np.int16)
    msg = pack_motion(12, 0.48, 3000, True, audio, t, bones, deltas)
    d = unpack_motion(msg)
    assert (d["index"], d["pts"], d["latency_us"], d["speaking"]) == (12, 0.48, 3000, True)
    assert np.abs(d["translation"] - t).max() <= np.abs(t).max() / 32767 * 0.51 + 1e-9
    assert np.abs(d["bones"] - bones).max() <= 0.5 / 32767 + 1e-7
    assert np.abs(d["deltas"] - deltas).max() <= 1e-3 * np.abs(deltas).max()
    assert np.array_equal(d["audio"], mulaw_decode(mulaw_encode(audio)))
    idle = pack_motion(13, 0.52, 0, False, np.zeros(0, np.int16), t)
    assert len(idle) == 32 + 6 * 143 and unpack_motion(idle)["bones"] is None
    with pytest.raises(ProtocolError, match="header says"):
        unpack_motion(msg[:-1])
    with pytest.raises(ProtocolError, match="kind"):
        unpack_motion(msg[:3] + b"\x02" + msg[4:])
    with pytest.raises(ProtocolError, match="render must be one of"):
        parse_control(json.dumps({"type": "hello", "version": 1, "render": "gpu"}))


# ---------------------------------------------------------------------------------------------- deformation
def _quat_mul(p, q):
    pw, px, py, pz = p.T
    qw, qx, qy, qz = q.T
    return np.stack([pw * qw - px * qx - py * qy - pz * qz, pw * qx + px * qw + py * qz - pz * qy,
                     pw * qy - px * qz + py * qw + pz * qx, pw * qz + px * qy - py * qx + pz * qw], 1)


def _rotate(q, v):
    """Rotate v [M, 3] by unit quaternions q [M, 4] (q v q*)."""
    w, u = q[:, :1], q[:, 1:]
    return v + 2 * np.cross(u, np.cross(u, v) + w * v)


def client_deform(u: dict, translation, deltas, bones):
    """What the browser does to the unpacked avatar, in numpy: -> (means [N, 3], quats [N, 4])."""
    idx, w = u["skin_index"], u["skin_weight"][..., None]
    means = u["means"] + (translation[idx] * w).sum(1)
    quats = u["quats"]
    if deltas is not None:
        r = (deltas[idx, 0:3] * w).sum(1)
        theta = np.linalg.norm(r, axis=1, keepdims=True)
        k = np.where(theta > 0, np.sin(theta / 2) / np.maximum(theta, 1e-20), 0.5)
        quats = _quat_mul(np.concatenate([np.cos(theta / 2), r * k], 1), quats)
        quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    if bones is not None:
        rows = np.nonzero(u["bone"] != 255)[0]
        p, q = bones[u["bone"][rows]], bones[u["bone_other"]]
        q = np.where((p * q).sum(1, keepdims=True) < 0, -q, q)
        s = u["bone_share"][:, None]
        qb = (1 - s) * p + s * q
        qb /= np.linalg.norm(qb, axis=1, keepdims=True)
        off = u["bone_offset"]
        means = means.copy()
        means[rows] += _rotate(qb, off) - off
        quats = quats.copy()
        quats[rows] = _quat_mul(qb, quats[rows])
    return means, quats


def test_client_motion_deforms_like_the_server(avatar):
    engine = AvatarEngine(avatar, EngineConfig(width=64, height=64, motion="procedural"))
    view = engine.view()
    gen = torch.Generator().manual_seed(1)
    canonical = torch.randn(len(canonical_slots()), 3, generator=gen) * 0.05
    names = avatar.particle_names
    for i, n in enumerate(names):              # raise the right arm: the elbow and wrist move up and out
        if n in ("pose:14", "pose:16"):
            canonical[view.slots[i]] += torch.tensor([-0.5, -1.5, 0.0]) * (2 if n == "pose:16" else 1)
    # a decoder with a live head, so deltas travel too
    torch.manual_seed(0)
    torch.nn.init.normal_(engine.decoder.head.weight, std=0.02)
    torch.nn.init.normal_(engine.decoder.head.bias, std=0.02)
    translation, deltas, bones = engine.client_motion(canonical)
    assert deltas is not None and deltas.shape == (len(names), 10)
    with torch.no_grad():
        _, _, g = view.splat(engine.decoder, view.to_world(canonical))
    u = unpack_avatar(pack_avatar(avatar))
    keep = facing(avatar.normals, avatar.gaussians.means, view.viewmat).nonzero().squeeze(1).numpy()
    means, quats = client_deform(u, translation, deltas, bones)
    span = float((avatar.gaussians.means.max(0).values - avatar.gaussians.means.min(0).values).max())
    assert np.abs(means[keep] - g.means.numpy()).max() < 1e-3 * span
    dots = np.abs((quats[keep] * g.quats.numpy()).sum(1))
    assert dots.min() > 0.995
    if avatar.bones is not None and bool((avatar.bones >= 0).any()):     # the arm really turned: the bone path
        angle = 2 * np.degrees(np.arccos(np.clip(np.abs(bones[:, 0]), 0, 1)))   # was exercised
        assert angle.max() > 10


# ---------------------------------------------------------------------------------------------- the session
def _get(port, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    return r.status, dict(r.getheaders()), r.read()


def test_client_session_streams_motion_not_frames(avatar):
    srv = Running(avatar, render="server")
    try:
        port = srv.server.port
        status, head, body = _get(port, "/avatar.splat", {"Accept-Encoding": "gzip"})
        assert status == 200 and head["Content-Encoding"] == "gzip"
        blob = gzip.decompress(body)
        assert unpack_avatar(blob)["means"].shape[0] == len(avatar.gaussians)
        status, head2, plain = _get(port, "/avatar.splat")
        assert status == 200 and plain == blob and "Content-Encoding" not in head2
        status, _, empty = _get(port, "/avatar.splat", {"If-None-Match": head["ETag"]})
        assert status == 304 and empty == b""

        async def run():
            ws, welcome = await hello(srv.url, render="client")
            assert welcome["render"] == "client" and welcome["avatar"] == "/avatar.splat"
            assert welcome["avatar_bytes"] == len(blob)
            tone = (np.sin(np.arange(16000) * 2 * np.pi * 220 / 16000) * 12000).astype(np.int16)
            await ws.send(json.dumps({"type": "camera", "yaw": 40}))      # harmless: the page orbits itself
            await ws.send(pack_audio(tone, 16000, seq=3))
            got, size = [], 0
            while sum(m["speaking"] for m in got) < 25:
                msg = await asyncio.wait_for(ws.recv(), 10)
                if isinstance(msg, str):
                    continue
                size += len(msg)
                got.append(unpack_motion(msg))
            speech = [m for m in got if m["speaking"]]
            echo = np.concatenate([m["audio"] for m in speech])
            assert np.abs(echo.astype(int) - mulaw_decode(mulaw_encode(tone)).astype(int)).max() == 0
            assert all(m["translation"].shape == (len(avatar.particle_names), 3) for m in got)
            assert all(len(m["audio"]) == 0 for m in got if not m["speaking"])   # silence costs no bytes
            assert [m["index"] for m in got] == list(range(got[0]["index"], got[0]["index"] + len(got)))
            assert size / len(got) * 25 < 50_000                             # under 50 kB/s, speech included
            await ws.close()
            ws2, w2 = await hello(srv.url)                                    # the server's default
            assert w2["render"] == "server" and "avatar" not in w2
            await ws2.close()
        asyncio.run(run())
    finally:
        srv.close()


def test_learned_sessions_generate_their_motion_together(avatar, monkeypatch):
    """Two sessions on the learned motion: the server's MotionBatcher (viewer/pacing.py) moves both engines in one
    generate_together round, and each session still gets its frames in order. (Not every frame: the server drops
    a frame that grew stale waiting, docs/protocol.md, and on a busy 2-core machine one sometimes does.)"""
    import viewer.pacing as pacing
    rounds = []
    real = pacing.generate_together

    def spy(engines):
        rounds.append(len(engines))
        return real(engines)
    monkeypatch.setattr(pacing, "generate_together", spy)
    srv = Running(avatar, motion="learned")
    try:
        async def run():
            a, _ = await hello(srv.url, render="client")
            b, _ = await hello(srv.url, render="client")
            assert {s.engine.source.motion.context for s in srv.server.sessions.values()} == {4}   # serve's default
            got = {a: [], b: []}

            async def read(ws):
                while len(got[ws]) < 30:
                    msg = await asyncio.wait_for(ws.recv(), 10)
                    if isinstance(msg, bytes):
                        got[ws].append(unpack_motion(msg)["index"])
            await asyncio.gather(read(a), read(b))
            for ws in (a, b):
                steps = [j - i for i, j in zip(got[ws], got[ws][1:])]
                assert min(steps) >= 1, got[ws]                                   # in order, none twice
                await ws.close()
        asyncio.run(run())
    finally:
        srv.close()
    assert rounds and max(rounds) == 2, rounds


def test_an_avatar_that_cannot_be_packed_still_serves_server_rendering(avatar):
    """View-dependent colour (SH degree 1) is not packed: a client-rendering hello gets a named fatal error and
    /avatar.splat a 404 saying why, while server-rendered sessions work as before."""
    import dataclasses

    from engine.render.gaussians import Gaussians
    g = avatar.gaussians
    sh = torch.cat([g.sh, torch.zeros(len(g), 3, 3)], dim=1)                       # degree 1, all zero
    shiny = dataclasses.replace(avatar, gaussians=Gaussians(g.means, g.quats, g.scales, g.opacities, sh))
    with pytest.raises(ValueError, match="SH degree 0 only"):
        pack_avatar(shiny)
    srv = Running(shiny)
    try:
        status, _, body = _get(srv.server.port, "/avatar.splat")
        assert status == 404 and b"SH degree" in body

        async def run():
            ws, reply = await hello(srv.url, render="client")
            assert reply["type"] == "error" and reply["fatal"] and "client rendering unavailable" in reply["message"]
            ws2, welcome = await hello(srv.url)
            assert welcome["type"] == "welcome" and welcome["render"] == "server"
            await ws2.close()
        asyncio.run(run())
    finally:
        srv.close()
