"""Read and write the standard (Inria) 3D Gaussian Splatting .ply layout.

One ``element vertex N`` with float properties, in this order when written::

    x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 f_rest_0 .. f_rest_{3*(K-1)-1}
    opacity scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3 [extra ...]

Stored values are pre-activation: ``opacity`` is a logit, ``scale_*`` are log-scales,
``rot_*`` is a wxyz quaternion (not necessarily unit). ``f_rest`` is channel-major:
index ``c*(K-1) + k-1`` holds coefficient ``k >= 1`` of channel ``c`` (R, G, B).
Normals are written as zeros and ignored on read. No plyfile dependency: the header
and body are parsed here with numpy (binary little/big endian and ascii).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from engine.pretrained import atomic_file_write

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_FORMATS = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": None}
_NORMALS = ("nx", "ny", "nz")
_REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
             "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")
_F_REST = re.compile(r"f_rest_(\d+)\Z")
_END_HEADER = re.compile(rb"(?:\A|\n)end_header[ \t]*(?:\r?\n|\Z)")


@dataclass
class GaussianPly:
    """Gaussians as stored in a 3DGS .ply (float32 tensors, pre-activation values).

    means: [N, 3]; quats: [N, 4] wxyz as stored; log_scales: [N, 3];
    opacity_logits: [N]; sh: [N, K, 3] with K = (degree+1)^2, coefficient-major
    (sh[:, 0, :] is f_dc); extra: name -> [N] for any other vertex property.
    """

    means: Tensor
    quats: Tensor
    log_scales: Tensor
    opacity_logits: Tensor
    sh: Tensor
    extra: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return math.isqrt(int(self.sh.shape[1])) - 1

    def scales(self) -> Tensor:
        """Activated scales, [N, 3]."""
        return torch.exp(self.log_scales)

    def opacities(self) -> Tensor:
        """Activated opacities in (0, 1), [N]."""
        return torch.sigmoid(self.opacity_logits)

    @classmethod
    def from_activated(cls, means: Tensor, quats: Tensor, scales: Tensor,
                       opacities: Tensor, sh: Tensor) -> "GaussianPly":
        """Build from activated values: scales [N, 3] > 0, opacities [N] in [0, 1]."""
        f32 = lambda t: torch.as_tensor(t).detach().to(torch.float32)  # noqa: E731
        logits = torch.logit(f32(opacities).clamp(1e-6, 1 - 1e-6))
        return cls(f32(means), f32(quats), torch.log(f32(scales)), logits, f32(sh))


# ----------------------------------------------------------------------------- write

def _columns(gs: GaussianPly) -> list[tuple[str, np.ndarray]]:
    """Validate ``gs`` and return (property name, [N] float32 column) in file order."""
    n = len(gs)
    shapes = {"means": (gs.means, (n, 3)), "quats": (gs.quats, (n, 4)),
              "log_scales": (gs.log_scales, (n, 3)), "opacity_logits": (gs.opacity_logits, (n,))}
    for name, (t, shape) in shapes.items():
        if tuple(t.shape) != shape:
            raise ValueError(f"GaussianPly.{name} has shape {tuple(t.shape)}, expected {shape}")
    k = gs.sh.shape[1] if gs.sh.dim() == 3 else -1
    if gs.sh.dim() != 3 or gs.sh.shape[0] != n or gs.sh.shape[2] != 3 or math.isqrt(k) ** 2 != k or k < 1:
        raise ValueError(f"GaussianPly.sh has shape {tuple(gs.sh.shape)}, expected [{n}, K, 3], K=(d+1)^2")

    def np32(t: Tensor) -> np.ndarray:
        return t.detach().cpu().to(torch.float32).numpy()

    means, quats, scales, sh = np32(gs.means), np32(gs.quats), np32(gs.log_scales), np32(gs.sh)
    cols = [(a, means[:, i]) for i, a in enumerate("xyz")]
    cols += [(a, np.zeros(n, np.float32)) for a in _NORMALS]
    cols += [(f"f_dc_{c}", sh[:, 0, c]) for c in range(3)]
    cols += [(f"f_rest_{c * (k - 1) + j - 1}", sh[:, j, c]) for c in range(3) for j in range(1, k)]
    cols += [("opacity", np32(gs.opacity_logits))]
    cols += [(f"scale_{i}", scales[:, i]) for i in range(3)]
    cols += [(f"rot_{i}", quats[:, i]) for i in range(4)]
    for name, t in gs.extra.items():
        bad_name = not re.fullmatch(r"\S+", name) or name in dict(cols) or _F_REST.match(name)
        if tuple(t.shape) != (n,) or bad_name:
            raise ValueError(f"GaussianPly.extra[{name!r}]: need a unique name and shape ({n},), "
                             f"got shape {tuple(t.shape)}")
        cols.append((name, np32(t)))
    return cols


def write_ply(path: str | os.PathLike, gs: GaussianPly, comments: tuple[str, ...] | list[str] = ()) -> None:
    """Write ``gs`` as binary little-endian float32 3DGS .ply, atomically.

    ``comments``: header ``comment`` lines (one line each, ASCII; every reader skips them).
    Data goes to a temporary file in the same directory, which then replaces ``path``
    (os.replace), so an existing file is never left half-written.
    """
    path = Path(path)
    for c in comments:
        if not c.isascii() or "\n" in c or "\r" in c:
            raise ValueError(f"PLY comment must be one line of ASCII, got {c!r}")
    cols = _columns(gs)
    table = np.empty((len(gs), len(cols)), dtype="<f4")
    for j, (_, col) in enumerate(cols):
        table[:, j] = col
    header = ["ply", "format binary_little_endian 1.0", *(f"comment {c}".rstrip() for c in comments),
              f"element vertex {len(gs)}"]
    header += [f"property float {name}" for name, _ in cols] + ["end_header"]
    def write(f) -> None:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(table.tobytes())
    atomic_file_write(path, write)


# ----------------------------------------------------------------------------- read

def _parse_header(path: Path, data: bytes):
    """Return (byte order or None for ascii, elements [(name, count, [(prop, dtype|None)])], body offset)."""
    if not re.match(rb"ply\r?\n", data):
        raise ValueError(f"{path}: not a PLY file (missing 'ply' magic line)")
    end = _END_HEADER.search(data)
    if end is None:
        raise ValueError(f"{path}: PLY header has no 'end_header' line")
    order, elements = "", []
    for line in data[:end.start()].decode("ascii", "replace").splitlines()[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            if len(words) != 3 or words[1] not in _FORMATS:
                raise ValueError(f"{path}: unknown PLY format line {line.strip()!r}")
            order = _FORMATS[words[1]]
        elif words[0] == "element" and len(words) == 3 and words[2].isdigit():
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property" and elements and len(words) == 3 and words[1] in _PLY_TYPES:
            elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
        elif words[0] == "property" and elements and len(words) == 5 and words[1] == "list":
            elements[-1][2].append((words[4], None))
        else:
            raise ValueError(f"{path}: malformed or unsupported PLY header line {line.strip()!r}")
    if order == "":
        raise ValueError(f"{path}: PLY header has no 'format' line")
    return order, elements, end.end()


def _read_vertices(path: Path, data: bytes) -> dict[str, np.ndarray]:
    """Return the vertex element's properties as name -> [N] float32 (header order)."""
    order, elements, offset = _parse_header(path, data)
    lines = data[offset:].decode("ascii", "replace").splitlines() if order is None else None
    for name, count, props in elements:
        if name == "vertex":
            break
        if order is None:  # ascii: one line per item
            lines = lines[count:]
        elif any(dt is None for _, dt in props):
            raise ValueError(f"{path}: cannot skip list element {name!r} stored before 'vertex'")
        else:
            offset += count * np.dtype([(p, order + dt) for p, dt in props]).itemsize
    else:
        raise ValueError(f"{path}: PLY has no 'vertex' element")
    names = [p for p, _ in props]
    if any(dt is None for _, dt in props):
        raise ValueError(f"{path}: list properties in 'vertex' are not supported")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate vertex property names in {names}")
    if order is None:
        rows = [ln.split() for ln in lines[:count]]
        if len(rows) < count or any(len(r) != len(names) for r in rows):
            raise ValueError(f"{path}: truncated/malformed ascii vertex data: expected {count} lines "
                             f"of {len(names)} values, got {len(rows)} lines")
        try:
            table = np.array(rows, dtype=np.float64).reshape(count, len(names))
        except ValueError as e:
            raise ValueError(f"{path}: bad number in ascii vertex data: {e}") from None
        return {p: table[:, j].astype(np.float32) for j, p in enumerate(names)}
    dtype = np.dtype([(p, order + dt) for p, dt in props])
    need, have = count * dtype.itemsize, len(data) - offset
    if have < need:
        raise ValueError(f"{path}: truncated vertex data: expected {need} bytes, got {have}")
    rec = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return {p: rec[p].astype(np.float32) for p in names}


def read_ply(path: str | os.PathLike) -> GaussianPly:
    """Read a 3DGS .ply (any property order/type, extra elements allowed) into float32 tensors."""
    path = Path(path)
    cols = _read_vertices(path, path.read_bytes())
    missing = [p for p in _REQUIRED if p not in cols]
    if missing:
        raise ValueError(f"{path}: missing required vertex properties {missing}")
    rest_ids = sorted(int(m.group(1)) for p in cols if (m := _F_REST.match(p)))
    m = len(rest_ids)
    k = m // 3 + 1
    if m % 3 or math.isqrt(k) ** 2 != k:
        raise ValueError(f"{path}: {m} f_rest_* properties; need 3*(K-1) with K a perfect square "
                         "(0, 9, 24, 45 for SH degree 0..3)")
    if rest_ids != list(range(m)):
        raise ValueError(f"{path}: f_rest_* indices are not 0..{m - 1}: {rest_ids}")

    def stack(names) -> Tensor:
        return torch.from_numpy(np.stack([cols[p] for p in names], axis=1).reshape(-1, len(names)))

    means = stack("xyz")
    if not torch.isfinite(means).all():
        bad = int((~torch.isfinite(means)).any(1).sum())
        raise ValueError(f"{path}: NaN/inf in means for {bad} of {len(means)} vertices")
    dc = stack([f"f_dc_{c}" for c in range(3)])  # [N, 3]
    rest = torch.zeros(len(means), 0, 3)
    if m:  # channel-major [N, 3*(K-1)] -> [N, K-1, 3]
        rest = stack([f"f_rest_{i}" for i in range(m)]).reshape(-1, 3, k - 1).transpose(1, 2)
    known = set(_REQUIRED) | set(_NORMALS) | {f"f_rest_{i}" for i in range(m)}
    return GaussianPly(
        means=means,
        quats=stack([f"rot_{i}" for i in range(4)]),
        log_scales=stack([f"scale_{i}" for i in range(3)]),
        opacity_logits=torch.from_numpy(cols["opacity"]),
        sh=torch.cat([dc[:, None, :], rest], dim=1).contiguous(),
        extra={p: torch.from_numpy(v) for p, v in cols.items() if p not in known},
    )
