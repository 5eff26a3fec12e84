"""Tests for engine/ply.py: the standard 3DGS .ply reader/writer.

Reference files are built by hand here (struct / numpy), not through write_ply.
"""
import os
import struct

import numpy as np
import pytest
import torch

from engine import ply
from engine.ply import GaussianPly, read_ply, write_ply


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
