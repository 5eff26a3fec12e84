"""Tests for engine/render/ply.py: the standard 3DGS .ply reader/writer.

Reference files are built by hand here (struct / numpy), not through write_ply.
"""
import json
import math
import os
import struct

import numpy as np
import pytest
import torch

from engine.render import ply
from engine.render.ply import GaussianPly, read_ply, write_ply


def random_gs(n: int, degree: int, seed: int = 0) -> GaussianPly:
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return GaussianPly(means=r(n, 3), quats=r(n, 4), log_scales=r(n, 3),
                       opacity_logits=r(n), sh=r(n, k, 3))


def std_names(k: int) -> list[str]:
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(3 * (k - 1))]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def header(fmt: str, n: int, props, tail: str = "") -> bytes:
    """props: list of (type, name)."""
    lines = ["ply", f"format {fmt} 1.0", "comment hand-made", f"element vertex {n}"]
    lines += [f"property {t} {p}" for t, p in props]
    return ("\n".join(lines) + "\n" + tail + "end_header\n").encode()


def binary_file(path, names, rows, fmt="binary_little_endian", type_="float", tail="", trailer=b""):
    order = "<" if fmt == "binary_little_endian" else ">"
    code = {"float": "f", "double": "d"}[type_]
    body = b"".join(struct.pack(order + code * len(names), *row) for row in rows)
    path.write_bytes(header(fmt, len(rows), [(type_, p) for p in names], tail) + body + trailer)
    return path


def assert_bitwise(a: torch.Tensor, b: torch.Tensor):
    assert a.dtype == b.dtype == torch.float32 and a.shape == b.shape
    assert torch.equal(a.contiguous().view(torch.int32), b.contiguous().view(torch.int32))


# ----------------------------------------------------------------------------- round trip

@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_exact(tmp_path, degree):
    gs = random_gs(57, degree, seed=degree)
    gs.means[0, 0] = -0.0  # sign of zero and extreme values survive bitwise
    gs.log_scales[1, 2] = torch.finfo(torch.float32).tiny / 2  # subnormal
    gs.opacity_logits[2] = float("inf")
    write_ply(tmp_path / "g.ply", gs)
    back = read_ply(tmp_path / "g.ply")
    assert len(back) == 57 and back.sh_degree == degree and back.extra == {}
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert_bitwise(getattr(back, name), getattr(gs, name))


def test_written_header_is_standard(tmp_path):
    write_ply(tmp_path / "g.ply", random_gs(3, 1))
    data = (tmp_path / "g.ply").read_bytes()
    head, body = data.split(b"end_header\n", 1)
    expected = ["ply", "format binary_little_endian 1.0", "element vertex 3"]
    expected += [f"property float {p}" for p in std_names(4)]
    assert head.decode().splitlines() == expected
    assert len(body) == 3 * len(std_names(4)) * 4
    table = np.frombuffer(body, "<f4").reshape(3, -1)
    assert (table[:, 3:6] == 0).all()  # normals are zeros


def test_empty_round_trip(tmp_path):
    write_ply(tmp_path / "e.ply", random_gs(0, 2))
    back = read_ply(tmp_path / "e.ply")
    assert len(back) == 0 and back.sh.shape == (0, 9, 3)


def test_activated_helpers():
    means, quats = torch.zeros(2, 3), torch.tensor([[1.0, 0, 0, 0]] * 2)
    scales = torch.tensor([[0.5, 1.0, 2.0]] * 2)
    gs = GaussianPly.from_activated(means, quats, scales, torch.tensor([0.0, 0.25]), torch.zeros(2, 1, 3))
    assert torch.allclose(gs.scales(), scales)
    assert torch.allclose(gs.log_scales, scales.log())
    assert torch.isfinite(gs.opacity_logits).all()  # 0 clamped to 1e-6
    assert torch.allclose(gs.opacities(), torch.tensor([1e-6, 0.25]), atol=1e-7)
    assert gs.sh_degree == 0 and len(gs) == 2


# ----------------------------------------------------------------------------- hand-made files

def test_ascii_file(tmp_path):
    p = tmp_path / "a.ply"
    # Shuffled order, mixed types, no normals, an extra property and a trailing face element.
    props = [("float", "opacity"), ("double", "x"), ("float", "y"), ("int", "z"),
             ("float", "f_dc_0"), ("float", "f_dc_1"), ("float", "f_dc_2"),
             ("float", "rot_0"), ("float", "rot_1"), ("float", "rot_2"), ("float", "rot_3"),
             ("uchar", "label"), ("float", "scale_0"), ("float", "scale_1"), ("float", "scale_2")]
    text = header("ascii", 2, props, tail="element face 0\nproperty list uchar int vertex_indices\n")
    text += b"0.5 1.25 -2 3 0.1 0.2 0.3 1 0 0 0 7 -1 -2 -3\n"
    text += b"-0.5 4 5 6 1e-3 2E2 -0.3 0.5 0.5 0.5 0.5 255 0 0 0\n"
    p.write_bytes(text)
    gs = read_ply(p)
    assert len(gs) == 2 and gs.sh_degree == 0
    assert torch.equal(gs.means, torch.tensor([[1.25, -2, 3], [4, 5, 6]]))
    assert torch.equal(gs.opacity_logits, torch.tensor([0.5, -0.5]))
    assert torch.equal(gs.sh[:, 0], torch.tensor([[0.1, 0.2, 0.3], [1e-3, 200, -0.3]]))
    assert torch.equal(gs.quats, torch.tensor([[1.0, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]]))
    assert torch.equal(gs.log_scales, torch.tensor([[-1.0, -2, -3], [0, 0, 0]]))
    assert set(gs.extra) == {"label"} and torch.equal(gs.extra["label"], torch.tensor([7.0, 255]))


def test_big_endian_file(tmp_path):
    names = std_names(1)
    rows = [[float(i * 100 + j) + 0.5 for j in range(len(names))] for i in range(3)]
    p = binary_file(tmp_path / "be.ply", names, rows, fmt="binary_big_endian", type_="double",
                    tail="element face 0\nproperty list uchar int vertex_indices\n")
    gs = read_ply(p)
    col = lambda name: torch.tensor([r[names.index(name)] for r in rows])  # noqa: E731
    assert torch.equal(gs.means, torch.stack([col("x"), col("y"), col("z")], 1))
    assert torch.equal(gs.opacity_logits, col("opacity"))
    assert torch.equal(gs.quats, torch.stack([col(f"rot_{i}") for i in range(4)], 1))
    assert torch.equal(gs.log_scales, torch.stack([col(f"scale_{i}") for i in range(3)], 1))
    assert gs.sh.dtype == torch.float32 and gs.extra == {}  # normals are dropped


@pytest.mark.parametrize("degree", [1, 3])
def test_f_rest_channel_major(tmp_path, degree):
    k = (degree + 1) ** 2
    names = std_names(k)
    # Each f_rest_i holds 1000 + i (+ 0.5 on the second vertex); f_dc_c holds c.
    rows = []
    for v in range(2):
        vals = {n: 0.0 for n in names} | {f"f_dc_{c}": float(c) + v for c in range(3)}
        vals |= {f"f_rest_{i}": 1000.0 + i + 0.5 * v for i in range(3 * (k - 1))}
        rows.append([vals[n] for n in names])
    gs = read_ply(binary_file(tmp_path / "sh.ply", names, rows))
    assert gs.sh.shape == (2, k, 3) and gs.sh_degree == degree
    for v in range(2):
        for c in range(3):
            assert gs.sh[v, 0, c] == c + v
            for j in range(1, k):
                assert gs.sh[v, j, c] == 1000.0 + c * (k - 1) + j - 1 + 0.5 * v
    # And the writer lays it out the same way.
    write_ply(tmp_path / "w.ply", gs)
    body = (tmp_path / "w.ply").read_bytes().split(b"end_header\n", 1)[1]
    assert np.array_equal(np.frombuffer(body, "<f4").reshape(2, -1), np.array(rows, np.float32))


def test_extra_properties_preserved(tmp_path):
    gs = random_gs(5, 1)
    gs.extra = {"semantic_id": torch.arange(5.0), "confidence": torch.rand(5)}
    write_ply(tmp_path / "x.ply", gs)
    head = (tmp_path / "x.ply").read_bytes().split(b"end_header\n")[0].decode().splitlines()
    assert head[-2:] == ["property float semantic_id", "property float confidence"]
    back = read_ply(tmp_path / "x.ply")
    assert list(back.extra) == ["semantic_id", "confidence"]
    for name, t in gs.extra.items():
        assert_bitwise(back.extra[name], t)


# ----------------------------------------------------------------------------- bad input

def _rows(names, n=2):
    return [[0.0] * len(names) for _ in range(n)]


def test_not_a_ply(tmp_path):
    p = tmp_path / "bad.ply"
    p.write_bytes(b"PK\x03\x04 not a ply at all")
    with pytest.raises(ValueError, match=r"bad\.ply.*not a PLY"):
        read_ply(p)


def test_missing_end_header(tmp_path):
    p = tmp_path / "noend.ply"
    p.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 0\n")
    with pytest.raises(ValueError, match="end_header"):
        read_ply(p)


def test_missing_property(tmp_path):
    names = [n for n in std_names(1) if n != "scale_1"]
    p = binary_file(tmp_path / "m.ply", names, _rows(names))
    with pytest.raises(ValueError, match=r"m\.ply.*missing.*scale_1"):
        read_ply(p)


def test_truncated(tmp_path):
    names = std_names(4)
    p = binary_file(tmp_path / "t.ply", names, _rows(names, 3))
    p.write_bytes(p.read_bytes()[:-10])
    need = 3 * len(names) * 4
    with pytest.raises(ValueError, match=rf"t\.ply.*truncated.*expected {need} bytes, got {need - 10}"):
        read_ply(p)


def test_truncated_ascii(tmp_path):
    p = tmp_path / "ta.ply"
    p.write_bytes(header("ascii", 2, [("float", n) for n in std_names(1)]) + b"0 " * 17 + b"\n")
    with pytest.raises(ValueError, match=r"ta\.ply.*expected 2 lines"):
        read_ply(p)


def test_unknown_format(tmp_path):
    names = std_names(1)
    p = binary_file(tmp_path / "f.ply", names, _rows(names))
    p.write_bytes(p.read_bytes().replace(b"binary_little_endian", b"binary_middle_endian"))
    with pytest.raises(ValueError, match=r"f\.ply.*unknown PLY format"):
        read_ply(p)


def test_bad_f_rest_count(tmp_path):
    names = std_names(1) + [f"f_rest_{i}" for i in range(6)]  # 6 = 3*(K-1) -> K=3, not a square
    p = binary_file(tmp_path / "r.ply", names, _rows(names))
    with pytest.raises(ValueError, match=r"r\.ply: 6 f_rest"):
        read_ply(p)


def test_nan_in_means(tmp_path):
    names = std_names(1)
    rows = _rows(names, 4)
    rows[2][1] = float("nan")
    p = binary_file(tmp_path / "n.ply", names, rows)
    with pytest.raises(ValueError, match=r"n\.ply.*NaN.*1 of 4"):
        read_ply(p)


def test_write_rejects_bad_shapes(tmp_path):
    gs = random_gs(4, 1)
    gs.quats = gs.quats[:, :3]
    with pytest.raises(ValueError, match="quats"):
        write_ply(tmp_path / "s.ply", gs)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- atomic write

@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
def test_atomic_write_keeps_old_file(tmp_path, monkeypatch, fail_at):
    target = tmp_path / "g.ply"
    write_ply(target, random_gs(4, 0, seed=1))
    old = target.read_bytes()

    def boom(*args):
        raise OSError("disk on fire")

    monkeypatch.setattr(ply.os, fail_at, boom)
    with pytest.raises(OSError, match="disk on fire"):
        write_ply(target, random_gs(50, 3, seed=2))
    monkeypatch.undo()
    assert target.read_bytes() == old
    assert os.listdir(tmp_path) == ["g.ply"]


def test_atomic_write_leaves_no_temp(tmp_path):
    write_ply(tmp_path / "a.ply", random_gs(4, 2))
    write_ply(tmp_path / "a.ply", random_gs(8, 1))  # overwrite existing
    assert os.listdir(tmp_path) == ["a.ply"]
    assert len(read_ply(tmp_path / "a.ply")) == 8


def test_comments_written_and_ignored(tmp_path):
    gs = random_gs(6, 1)
    write_ply(tmp_path / "c.ply", gs, comments=["made by a test", "centre 1 2 3"])
    head = (tmp_path / "c.ply").read_bytes().split(b"end_header\n")[0].decode().splitlines()
    assert head[:4] == ["ply", "format binary_little_endian 1.0", "comment made by a test", "comment centre 1 2 3"]
    back = read_ply(tmp_path / "c.ply")
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert_bitwise(getattr(back, name), getattr(gs, name))
    with pytest.raises(ValueError, match="one line"):
        write_ply(tmp_path / "d.ply", gs, comments=["two\nlines"])
    assert not (tmp_path / "d.ply").exists()


# ----------------------------------------------------------------------------- web export (engine.avatar.web_export)

from engine.avatar import web_export  # noqa: E402
from engine.avatar.web_export import WEB_FROM_WORLD, export_web_ply, rotate_x180, seal_hidden_side, web_ply  # noqa: E402


def person_gs(n_side: int = 12, seed: int = 0) -> tuple[GaussianPly, torch.Tensor, torch.Tensor]:
    """A flat 'person' in our world frame (photo camera at the origin looking down +z, y down): a front sheet at
    z = 2.4 facing the camera and a back sheet at z = 2.6, head (a brighter block) at small y. -> (Gaussians,
    normals [N, 3], is_head [N])."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(-0.4, 0.4, n_side), torch.linspace(-0.3, 0.3, n_side), indexing="ij")
    xy = torch.stack([xs.flatten(), ys.flatten()], -1)
    front = torch.cat([xy, torch.full((len(xy), 1), 2.4)], -1)
    back = torch.cat([xy, torch.full((len(xy), 1), 2.6)], -1)
    means = torch.cat([front, back]) + torch.tensor([0.05, -0.1, 0.0])
    n = len(means)
    normals = torch.cat([torch.tensor([[0.0, 0, -1]]).expand(len(xy), 3),
                         torch.tensor([[0.0, 0, 1]]).expand(len(xy), 3)])
    is_head = torch.cat([xy[:, 1] < -0.2, xy[:, 1] < -0.2])
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g) * 0.2 + torch.tensor([1.0, 0, 0, 0]), dim=-1)
    log_scales = torch.log(torch.tensor([0.04, 0.04, 0.01])).expand(n, 3) + 0.1 * torch.randn(n, 3, generator=g)
    sh = torch.zeros(n, 16, 3)
    sh[:, 0] = torch.where(is_head[:, None], 1.0, -0.5) + 0.1 * torch.randn(n, 3, generator=g)
    sh[:, 1:] = 0.3 * torch.randn(n, 15, 3, generator=g)
    return GaussianPly(means, quats, log_scales.contiguous(), torch.full((n,), 2.0), sh), normals, is_head


def test_web_frame_centred_upright_facing_plus_z():
    gs, normals, is_head = person_gs()
    out, centre = web_ply(gs)
    assert torch.allclose(out.means.amin(0) + out.means.amax(0), torch.zeros(3), atol=0.02)   # centred
    assert torch.allclose(centre, torch.tensor([0.05, -0.1, 2.5]), atol=0.02)
    # head up: in our frame the head has the smaller y (y down); on the web it has the larger y (y up)
    assert out.means[is_head, 1].min() > out.means[~is_head, 1].max()
    # the front sheet (facing the photo camera) is nearer +z: a three.js camera on +z sees the face
    front = normals[:, 2] < 0
    assert out.means[front, 2].min() > out.means[~front, 2].max()
    assert torch.allclose(out.means[front, 2], torch.full((int(front.sum()),), 0.1), atol=1e-5)
    # the person's right (photo's left, x < 0) stays on the left of a camera on +z looking at -z, y up: a
    # rotation, not a mirror, so x keeps its sign
    assert torch.equal(torch.sign(out.means[:, 0]), torch.sign(gs.means[:, 0] - centre[0]))
    assert torch.equal(out.log_scales, gs.log_scales) and torch.equal(out.opacity_logits, gs.opacity_logits)


def test_web_quaternions_rotate_covariances():
    """Hand computation: world covariance Sigma = R S S^T R^T goes to F Sigma F^T with F = diag(1, -1, -1)."""
    from cuda_ext.reference import quat_scale_to_covar
    from quaternion import quat_multiply

    gs = random_gs(200, 0, seed=3)
    out = rotate_x180(gs, torch.zeros(3))
    F = WEB_FROM_WORLD
    want = F @ quat_scale_to_covar(gs.quats, gs.scales()) @ F.T
    got = quat_scale_to_covar(out.quats, out.scales())
    assert torch.allclose(got, want, atol=1e-5 * float(want.abs().max()))
    assert torch.allclose(out.quats, quat_multiply(web_export.Q_WEB_FROM_WORLD.expand(200, 4), gs.quats))
    # and F itself is a proper rotation (det +1): no mirror, so handedness and winding survive
    assert torch.isclose(torch.det(F), torch.tensor(1.0))
    # a single hand case: the identity orientation becomes 180 degrees about x
    one = rotate_x180(GaussianPly(torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]), torch.zeros(1, 3),
                                  torch.zeros(1), torch.zeros(1, 1, 3)), torch.zeros(3))
    assert torch.equal(one.quats, torch.tensor([[0.0, 1.0, 0.0, 0.0]]))


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_web_sh_rotates_with_the_avatar(degree):
    """The colour seen from direction F d on the web equals the colour seen from d in our frame."""
    from cuda_ext.reference import spherical_harmonics

    gs = random_gs(50, degree, seed=degree)
    out = rotate_x180(gs, torch.zeros(3))
    dirs = torch.nn.functional.normalize(torch.randn(50, 3, generator=torch.Generator().manual_seed(9)), dim=-1)
    before = spherical_harmonics(degree, dirs, gs.sh)
    after = spherical_harmonics(degree, dirs @ WEB_FROM_WORLD.T, out.sh)
    assert torch.allclose(after, before, atol=1e-5)
    assert torch.equal(out.sh[:, 0], gs.sh[:, 0])


def test_web_render_matches_ours():
    """Rendering the web .ply with the camera moved by the same transform gives our render (SH degree 3,
    oblique view, so means, orientations and view-dependent colour all count)."""
    from engine.render.camera import intrinsics, look_at
    from engine.render.gaussians import Gaussians
    from engine.render.splat import render_gaussians

    gs, _, _ = person_gs(10)
    out, centre = web_ply(gs)
    viewmat = look_at(torch.tensor([0.8, -0.3, 0.9]), torch.tensor([0.0, 0.0, 2.5]))
    F = WEB_FROM_WORLD
    web_view = torch.eye(4)
    web_view[:3, :3] = viewmat[:3, :3] @ F                       # p = F p_web + centre
    web_view[:3, 3] = viewmat[:3, :3] @ centre + viewmat[:3, 3]
    K = intrinsics(64, 64, 40.0)
    a, alpha_a = render_gaussians(Gaussians.from_ply(gs), viewmat, K, 64, 64)
    b, alpha_b = render_gaussians(Gaussians.from_ply(out), web_view, K, 64, 64)
    assert float(alpha_a.mean()) > 0.1
    # float rounding of the moved coordinates only: a few pixels differ by < 1%, the mean by ~1e-5
    assert float((a - b).abs().max()) < 1e-2 and float((a - b).abs().mean()) < 1e-4
    assert float((alpha_a - alpha_b).abs().max()) < 1e-2
    unrotated_sh = Gaussians.from_ply(out)
    unrotated_sh.sh = gs.sh                                          # the check can tell a wrong SH rotation
    c, _ = render_gaussians(unrotated_sh, web_view, K, 64, 64)
    assert float((a - c).abs().mean()) > 100 * float((a - b).abs().mean())


def test_seal_hidden_side():
    gs, normals, _ = person_gs()
    hidden = normals[:, 2] > 0
    gs.opacity_logits[:3] = -1.0
    gs.opacity_logits[-3:] = -1.0
    out = seal_hidden_side(gs, hidden)
    assert (out.opacities()[hidden] >= web_export.SEAL_OPACITY - 1e-6).all()
    assert torch.equal(out.opacity_logits[~hidden], gs.opacity_logits[~hidden])    # the front: untouched
    assert torch.equal(out.log_scales[~hidden], gs.log_scales[~hidden])
    grow = (out.log_scales - gs.log_scales)[hidden]
    thin = gs.log_scales[hidden].argmin(-1)
    assert torch.allclose(grow.gather(-1, thin[:, None]), torch.zeros(int(hidden.sum()), 1))    # thin axis kept
    assert torch.allclose(grow.sum(-1), torch.full((int(hidden.sum()),), 2 * math.log(web_export.SEAL_WIDEN)))
    assert torch.equal(out.means, gs.means) and torch.equal(out.sh, gs.sh)


def tiny_avatar(n_side: int = 6):
    from engine.avatar.bundle import Avatar, PhotoCamera
    from engine.render.camera import intrinsics
    from engine.render.gaussians import Gaussians

    gs, normals, _ = person_gs(n_side)
    n = len(gs)
    return Avatar(Gaussians.from_ply(gs), torch.zeros(n, dtype=torch.long), torch.zeros(2, 3),
                  torch.zeros(2, dtype=torch.long), ["a", "b"], torch.zeros(n, 2, dtype=torch.long),
                  torch.full((n, 2), 0.5), PhotoCamera(intrinsics(64, 48, 20.0), torch.eye(4), 64, 48), {}, normals)


def test_export_web_ply_file(tmp_path):
    avatar = tiny_avatar()
    bundle = avatar.save_pretrained(tmp_path / "bundle")
    info = export_web_ply(bundle, tmp_path / "web.ply")
    assert json.loads(json.dumps(info)) == info                      # JSON-able, for the CLI
    back = read_ply(tmp_path / "web.ply")
    hidden = avatar.normals[:, 2] > 0
    want, centre = web_ply(avatar.gaussians.to_ply(), hidden=hidden)
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert_bitwise(getattr(back, name), getattr(want, name))
    assert info["gaussians"] == len(back) == len(avatar.gaussians) and info["sealed"] == int(hidden.sum())
    assert info["centre"] == pytest.approx(centre.tolist(), abs=1e-6)
    head = (tmp_path / "web.ply").read_bytes().split(b"end_header\n")[0].decode()
    assert "comment audioavatar web: p_web = diag(1,-1,-1) @ (p_bundle - centre); centre" in head
    # the photo camera, in the web frame: on +z in front of the face, looking at -z, y up, 20 degrees
    cam = info["photo_camera"]
    assert cam["position"] == pytest.approx((WEB_FROM_WORLD @ -centre).tolist(), abs=1e-5)
    assert cam["position"][2] > 2
    assert cam["look_at"][2] == pytest.approx(0.0, abs=1e-3) and cam["up"] == [0.0, 1.0, 0.0]
    assert cam["fov_y_deg"] == pytest.approx(20.0) and (cam["width"], cam["height"]) == (64, 48)
    assert 0.3 < info["radius"] < 0.6
    # the bundle itself is untouched: its gaussians.ply is still in our frame
    assert_bitwise(read_ply(bundle / "gaussians.ply").means, avatar.gaussians.to_ply().means)
    # without sealing (or without normals), only the transform
    export_web_ply(avatar, tmp_path / "plain.ply", seal_back=False)
    assert_bitwise(read_ply(tmp_path / "plain.ply").log_scales, avatar.gaussians.to_ply().log_scales)


def test_cli_export_writes_the_web_ply_and_names_bad_arguments(tmp_path, capsys):
    from audioavatar.cli import main
    from test_avatar_bundle import tiny_avatar
    bundle = tiny_avatar().save_pretrained(tmp_path / "me")
    out = tmp_path / "web.ply"
    assert main(["export", str(bundle), "-o", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    back, src = read_ply(out), read_ply(bundle / "gaussians.ply")
    centre = torch.tensor(summary["centre"])
    want = (src.means - centre) * torch.tensor([1.0, -1.0, -1.0])            # the turn about x, by hand
    assert len(back) == 300 and torch.allclose(back.means, want, atol=1e-5)
    assert main(["export", str(bundle), "-o", str(tmp_path / "web.txt")]) == 2
    assert main(["export", str(tmp_path), "-o", str(tmp_path / "x.ply")]) == 2
    err = capsys.readouterr().err
    assert "expected a .ply file path" in err and "not an avatar folder" in err
    assert not (tmp_path / "x.ply").exists()
