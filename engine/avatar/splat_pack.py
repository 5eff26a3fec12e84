"""An avatar packed for client-side rendering (`audioavatar serve --render client`): everything a browser needs to
deform and splat it itself, quantised, in one binary blob the page downloads once (GET /avatar.splat).

Layout (little-endian):
    b"AASPLAT1"                 8 bytes
    header length L             uint32
    header                      L bytes of UTF-8 JSON, then zero padding to a multiple of 4
    sections                    one after another, each starting on a multiple of 4 (header["sections"] gives
                                name, dtype, shape, offset from the blob's start, and the [lo, hi] range where the
                                values are quantised)
Sections, N Gaussians, K control particles, J skin columns, M Gaussians on a limb bone:
    means       uint16 [N, 3]   lo[axis] + q / 65535 * (hi[axis] - lo[axis])   (world = the photo camera's frame)
    quats       int8   [N, 4]   q / 127, wxyz; renormalised by the reader
    log_scales  uint16 [N, 3]   lo + q / 65535 * (hi - lo), one range for all axes; scale = exp(.)
    colors      uint8  [N, 3]   lo + q / 255 * (hi - lo), base colour SH_C0 * dc + 0.5 (unclamped, so a range)
    opacities   uint8  [N]      q / 255
    away_colors uint8  [N, 3]   as colors (its own range): the colour shown away from the photo camera
                                (engine/render/away.py; the base colour where the avatar has no other)
    normals     int8   [N, 3]   q / 127, (0, 0, 0) = unknown
    skin_index  uint8 or uint16 [N, J]  (uint8 when K <= 256)
    skin_weight uint8  [N, J]   lo + q / 255 * (hi - lo), lo <= 0, hi >= 1 (the eyelids' lash band overshoots 1, and
                                its row has a small negative weight), with 0 and 1 on exact codes; renormalised
                                by the reader (a row summing to 0 stays on its first column)
    bone        uint8  [N]      limb bone 0..B-1 (engine.avatar.limbs.BONES) whose rotation the Gaussian takes,
                                255 = none
    bone_other  uint8  [M]      for the M Gaussians with a bone, in order: the second bone row (0..B, B = torso)
    bone_share  uint8  [M]      q / 510: the blend share of that row, in [0, 0.5]
    bone_offset int16  [M, 3]   q / 32767 * hi: the rest offset of the Gaussian from its bone (LimbRig.offset)
The header also holds the photo camera (viewmat [4, 4] row-major, fx fy cx cy for width x height), its centre
photo_eye [3] and away_deg [2] (the away colour fades in as a camera turns from it, engine/render/away.py), the
orbit pivot, K, J, B and the particle names. Only the DC colour is packed: every avatar made by personalize has SH
degree 0, and a higher degree is refused rather than silently flattened.

Sizes: the bundled astronaut (66k Gaussians) packs to 2.16 MB, 1.33 MB gzip'd.
Per-frame motion, which deforms this on the client, travels in viewer/protocol.py's motion messages.
"""
from __future__ import annotations

import json
import struct

import numpy as np
import torch

from cuda_ext.reference import SH_C0
from engine.avatar.bundle import Avatar
from engine.avatar.limbs import BONES, LimbRig
from engine.render.away import AWAY_DEG, NEAR_DEG
from engine.render.camera import camera_centre

MAGIC = b"AASPLAT1"
NO_BONE = 255
_DTYPES = {"uint8": np.uint8, "int8": np.int8, "uint16": np.uint16, "int16": np.int16}


def _q_range(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, levels: int) -> np.ndarray:
    """Quantise x onto 0..levels between lo and hi (broadcast)."""
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.rint(np.clip((x - lo) / span, 0.0, 1.0) * levels)


def _weight_range(w_min: float, w_max: float) -> tuple[float, float]:
    """[lo, hi] for 255-level skin weights covering [min(0, w_min), max(1, w_max)] on which 0 and 1 fall exactly on
    codes (a whole number m of steps per unit, lo = -c / m). Most weights are 0 or 1: a code between would leak a
    few thousandths of every neighbour's motion into a Gaussian bound to one particle."""
    for m in range(255, 0, -1):
        lo = -float(np.ceil(-min(0.0, w_min) * m - 1e-9)) / m
        hi = lo + 255.0 / m
        if hi >= max(1.0, w_max) - 1e-9:
            return lo, hi
    raise ValueError(f"splat pack: skin weights span [{w_min}, {w_max}], over 255 units")


def _unit(x: np.ndarray, levels: int) -> np.ndarray:
    return np.rint(np.clip(x, -1.0, 1.0) * levels)


def orbit_pivot(avatar: Avatar) -> list[float]:
    """The point the live camera orbits (AvatarEngine.pivot): on the optical axis, at the median depth of the
    solid Gaussians."""
    g = avatar.gaussians
    solid = g.opacities > 0.5
    return [0.0, 0.0, float(g.means[solid, 2].median())]


def pack_avatar(avatar: Avatar) -> bytes:
    """The avatar as the blob the module docstring lays out."""
    g = avatar.gaussians
    if g.sh.shape[1] != 1:
        raise ValueError(f"avatar: client rendering packs SH degree 0 only, this avatar has degree {g.sh_degree}")
    N, K = len(g), avatar.particles.shape[0]
    if K > 65536:
        raise ValueError(f"avatar: at most 65536 control particles can be packed, got {K}")
    J = avatar.skin_index.shape[1]
    f = lambda t: t.detach().float().cpu().numpy()  # noqa: E731
    sections: list[tuple[str, np.ndarray, list | None]] = []

    means = f(g.means)
    lo, hi = means.min(0), means.max(0)
    sections.append(("means", _q_range(means, lo, hi, 65535).astype(np.uint16), [lo.tolist(), hi.tolist()]))
    quats = f(g.quats)
    quats /= np.maximum(np.linalg.norm(quats, axis=1, keepdims=True), 1e-12)
    sections.append(("quats", _unit(quats, 127).astype(np.int8), None))
    ls = np.log(np.maximum(f(g.scales), 1e-30))
    lo, hi = float(ls.min()), float(ls.max())
    sections.append(("log_scales", _q_range(ls, np.float32(lo), np.float32(hi), 65535).astype(np.uint16), [lo, hi]))
    colors = SH_C0 * f(g.sh[:, 0]) + 0.5
    lo, hi = float(colors.min()), float(colors.max())
    sections.append(("colors", _q_range(colors, np.float32(lo), np.float32(hi), 255).astype(np.uint8), [lo, hi]))
    sections.append(("opacities", np.rint(np.clip(f(g.opacities), 0, 1) * 255).astype(np.uint8), None))
    away = avatar.away_colour()
    away_colors = colors if away is None else SH_C0 * f(away.dc) + 0.5
    lo, hi = float(away_colors.min()), float(away_colors.max())
    sections.append(("away_colors", _q_range(away_colors, np.float32(lo), np.float32(hi), 255).astype(np.uint8),
                     [lo, hi]))
    normals = np.zeros((N, 3), np.float32) if avatar.normals is None else f(avatar.normals)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.where(length > 0, normals / np.maximum(length, 1e-12), 0.0)
    sections.append(("normals", _unit(normals, 127).astype(np.int8), None))
    sections.append(("skin_index", avatar.skin_index.cpu().numpy().astype(np.uint8 if K <= 256 else np.uint16), None))
    w = f(avatar.skin_weight)                     # the eyelids' lash band takes a little over 1 (and below 0)
    lo, hi = _weight_range(float(w.min()), float(w.max()))
    sections.append(("skin_weight", _q_range(w, np.float32(lo), np.float32(hi), 255).astype(np.uint8), [lo, hi]))

    bone = np.full(N, NO_BONE, np.uint8)
    rig = None
    if avatar.bones is not None:
        rig = LimbRig(avatar.particles, avatar.particle_names, g.means, avatar.bones) or None
    if rig is not None:
        rows = rig.rows.cpu().numpy()
        bone[rows] = rig.bone.cpu().numpy()
        offset = f(rig.offset)
        top = float(np.abs(offset).max()) or 1.0
        sections += [("bone", bone, None),
                     ("bone_other", rig.other.cpu().numpy().astype(np.uint8), None),
                     ("bone_share", np.rint(np.clip(f(rig.share[:, 0]), 0, 0.5) * 510).astype(np.uint8), None),
                     ("bone_offset", _unit(offset / top, 32767).astype(np.int16), [0.0, top])]
    else:
        sections += [("bone", bone, None), ("bone_other", np.zeros(0, np.uint8), None),
                     ("bone_share", np.zeros(0, np.uint8), None), ("bone_offset", np.zeros((0, 3), np.int16), [0, 1])]

    cam = avatar.camera
    Kc = cam.K.float()
    header = {"version": 1, "n": N, "K": K, "J": J, "B": len(BONES),
              "camera": {"viewmat": [float(v) for v in cam.viewmat.float().flatten()],
                         "fx": float(Kc[0, 0]), "fy": float(Kc[1, 1]), "cx": float(Kc[0, 2]), "cy": float(Kc[1, 2]),
                         "width": int(cam.width), "height": int(cam.height)},
              "photo_eye": [float(v) for v in camera_centre(cam.viewmat.float())],
              "away_deg": [NEAR_DEG, AWAY_DEG],
              "pivot": orbit_pivot(avatar), "particle_names": list(avatar.particle_names), "sections": []}
    # offsets depend on the header's length, which depends on the offsets' digits: lay out twice
    for _ in range(2):
        head = json.dumps(header, separators=(",", ":")).encode()
        at = _align(len(MAGIC) + 4 + len(head))
        header["sections"] = []
        for name, arr, rng in sections:
            entry = {"name": name, "dtype": arr.dtype.name, "shape": list(arr.shape), "offset": at,
                     "bytes": arr.nbytes}
            if rng is not None:
                entry["range"] = rng
            header["sections"].append(entry)
            at = _align(at + arr.nbytes)
    head = json.dumps(header, separators=(",", ":")).encode()
    out = bytearray(MAGIC + struct.pack("<I", len(head)) + head)
    for (name, arr, _), entry in zip(sections, header["sections"]):
        out += bytes(entry["offset"] - len(out))
        if len(out) != entry["offset"]:
            raise AssertionError(f"splat pack: section {name} laid out at {entry['offset']}, written at {len(out)}")
        out += np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
    return bytes(out)


def _align(n: int) -> int:
    return (n + 3) // 4 * 4


def unpack_avatar(blob: bytes) -> dict:
    """The blob back to float arrays (the reader the browser's avatar_codec.js mirrors): {"header": dict, and per
    field numpy arrays: means [N, 3], quats [N, 4] (unit), scales [N, 3], colors [N, 3], opacities [N],
    away_colors [N, 3], normals [N, 3], skin_index [N, J] int64, skin_weight [N, J] (rows sum to 1), bone [N]
    uint8, bone_other [M], bone_share [M], bone_offset [M, 3]}."""
    if len(blob) < 12 or blob[:8] != MAGIC:
        raise ValueError(f"splat blob: expected the magic {MAGIC!r}, got {bytes(blob[:8])!r}")
    (n_head,) = struct.unpack_from("<I", blob, 8)
    if 12 + n_head > len(blob):
        raise ValueError(f"splat blob: header of {n_head} bytes runs past the blob's {len(blob)} bytes")
    header = json.loads(bytes(blob[12:12 + n_head]))
    raw = {}
    for s in header["sections"]:
        dtype = np.dtype(_DTYPES[s["dtype"]]).newbyteorder("<")
        count = int(np.prod(s["shape"])) if s["shape"] else 1
        if s["offset"] + count * dtype.itemsize > len(blob):
            raise ValueError(f"splat blob: section {s['name']} runs past the end")
        raw[s["name"]] = (np.frombuffer(blob, dtype, count, s["offset"]).reshape(s["shape"]), s.get("range"))
    out: dict = {"header": header}
    q, (lo, hi) = raw["means"]
    out["means"] = np.asarray(lo, np.float32) + q / 65535.0 * (np.asarray(hi, np.float32) - np.asarray(lo, np.float32))
    qt = raw["quats"][0].astype(np.float32) / 127.0
    out["quats"] = qt / np.maximum(np.linalg.norm(qt, axis=1, keepdims=True), 1e-12)
    q, (lo, hi) = raw["log_scales"]
    out["scales"] = np.exp(lo + q / 65535.0 * (hi - lo))
    q, (lo, hi) = raw["colors"]
    out["colors"] = lo + q / 255.0 * (hi - lo)
    out["opacities"] = raw["opacities"][0] / 255.0
    q, (lo, hi) = raw["away_colors"]
    out["away_colors"] = lo + q / 255.0 * (hi - lo)
    out["normals"] = raw["normals"][0].astype(np.float32) / 127.0
    out["skin_index"] = raw["skin_index"][0].astype(np.int64)
    q, span = raw["skin_weight"]
    lo, hi = span if span is not None else (0.0, 1.0)
    w = lo + q.astype(np.float32) / 255.0 * (hi - lo)
    total = w.sum(1, keepdims=True)
    first = np.zeros_like(w)
    first[:, 0] = 1.0
    ok = np.abs(total) > 1e-6
    out["skin_weight"] = np.where(ok, w / np.where(ok, total, 1.0), first)
    out["bone"] = raw["bone"][0]
    out["bone_other"] = raw["bone_other"][0].astype(np.int64)
    out["bone_share"] = raw["bone_share"][0] / 510.0
    q, (_, top) = raw["bone_offset"]
    out["bone_offset"] = q.astype(np.float32) / 32767.0 * top
    return {k: (v.astype(np.float32) if isinstance(v, np.ndarray) and v.dtype == np.float64 else v)
            for k, v in out.items()}


def unpacked_gaussians(unpacked: dict):
    """The Gaussians of an unpacked blob as engine Gaussians (for comparing a render of the packed avatar with
    the original's)."""
    from engine.render.gaussians import Gaussians
    t = lambda k: torch.from_numpy(np.ascontiguousarray(unpacked[k])).float()  # noqa: E731
    dc = (t("colors") - 0.5) / SH_C0
    return Gaussians(t("means"), t("quats"), t("scales"), t("opacities"), dc[:, None, :])
