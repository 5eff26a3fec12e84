"""Input checks for the public splatting ops: each failure is a ValueError naming the argument, the rule
and what was given, so bad input never reaches a kernel (no segfault, no silent black image).

Shapes, dtypes and devices are checked here at once. The value rules (finite, scales > 0, ...) run as one
op, `ops.value_flags` (a single pass in C++ or CUDA, or its torch twin), read back with one host sync:
on a GPU, the 14 torch reductions and read-backs they used to be took 1.0-1.3 ms of a 2-3 ms forward
(H100, 2026-11-22). `check_values` turns a failed mask into the message naming the first failure.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from . import reference

RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")


def _shape(t: Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def _non_finite(name: str, t: Tensor) -> str:
    bad = int((~torch.isfinite(t.detach())).sum())
    return f"{name}: must be finite, found {bad} NaN/inf value(s) in a tensor of shape {_shape(t)}"


def tensor(name: str, t, shape: tuple, *, finite: bool = False) -> Tensor:
    """Check `t` is a float32 tensor whose shape matches `shape` (ints fixed, None free, str = named dim), and
    with `finite` that it holds no NaN/inf (the Gaussians' and cameras' values go through check_values)."""
    if not isinstance(t, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
    if t.dim() != len(shape) or any(isinstance(s, int) and s != d for s, d in zip(shape, t.shape)):
        raise ValueError(f"{name}: expected shape {want}, got {_shape(t)}")
    if t.dtype != torch.float32:
        raise ValueError(f"{name}: expected dtype float32, got {t.dtype}")
    if finite and t.numel() and not bool(torch.isfinite(t.detach()).all()):
        raise ValueError(_non_finite(name, t))
    return t


def positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"{name}: expected a positive int, got {v!r}")
    return v


def same_device(**tensors: Tensor | None) -> None:
    devs = {k: t.device for k, t in tensors.items() if t is not None}
    if len(set(devs.values())) > 1:
        raise ValueError(f"all tensors must be on one device, got {', '.join(f'{k}={d}' for k, d in devs.items())}")


def check_gaussians(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor) -> int:
    """Shapes of means [N, 3], quats [N, 4] wxyz, scales [N, 3], opacities [N] -> N (values: check_values)."""
    tensor("means", means, (None, 3))
    N = means.shape[0]
    tensor("quats", quats, (N, 4))
    tensor("scales", scales, (N, 3))
    tensor("opacities", opacities, (N,))
    return N


def check_cameras(viewmats: Tensor, Ks: Tensor, width, height) -> int:
    """Shapes of viewmats [C, 4, 4], Ks [C, 3, 3]; width/height > 0 -> C (values: check_values)."""
    tensor("viewmats", viewmats, (None, 4, 4))
    C = viewmats.shape[0]
    if C == 0:
        raise ValueError("viewmats: need at least one camera, got shape [0, 4, 4]")
    tensor("Ks", Ks, (C, 3, 3))
    positive_int("width", width)
    positive_int("height", height)
    return C


def check_colors(colors: Tensor, C: int, N: int, sh_degree: int | None) -> None:
    """colors: [N, D] / [C, N, D] post-activation values, or SH [N, K, 3] / [C, N, K, 3] with sh_degree."""
    if not isinstance(colors, Tensor):
        raise ValueError(f"colors: expected a torch.Tensor, got {type(colors).__name__}")
    if sh_degree is None:
        shape = (N, None) if colors.dim() == 2 else (C, N, None)
        tensor("colors", colors, shape)
        return
    if isinstance(sh_degree, bool) or not isinstance(sh_degree, int) or not 0 <= sh_degree <= 3:
        raise ValueError(f"sh_degree: expected None or an int in 0..3, got {sh_degree!r}")
    shape = (N, None, 3) if colors.dim() == 3 else (C, N, None, 3)
    # SH coefficients are checked for NaN/inf after evaluation (check_sh_colors): 16x fewer values to scan.
    tensor("colors", colors, shape)
    if colors.shape[-2] < (sh_degree + 1) ** 2:
        raise ValueError(f"colors: sh_degree={sh_degree} needs at least {(sh_degree + 1) ** 2} SH coefficients "
                         f"per Gaussian, got shape {_shape(colors)}")


def check_sh_colors(sh_colors: Tensor, sh_degree: int) -> None:
    """A NaN or inf in any SH band used by sh_degree reaches the evaluated colours [C, N, 3]."""
    if sh_colors.numel() and not bool(torch.isfinite(sh_colors.detach().sum())):
        bad = int((~torch.isfinite(sh_colors.detach())).any(-1).sum())
        raise ValueError(f"colors: SH coefficients must be finite, found NaN/inf in the bands used by "
                         f"sh_degree={sh_degree} ({bad} Gaussian-camera pair(s) affected)")


def check_render_mode(render_mode: str) -> str:
    if render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode: expected one of {RENDER_MODES}, got {render_mode!r}")
    return render_mode


def check_planes(near_plane: float, far_plane: float, eps2d: float) -> None:
    if not (0 <= near_plane < far_plane):
        raise ValueError(f"near_plane/far_plane: need 0 <= near_plane < far_plane, got {near_plane}, {far_plane}")
    if not eps2d >= 0:
        raise ValueError(f"eps2d: must be >= 0, got {eps2d}")


# ------------------------------------------------------------------------------------------ value rules
def _scales(t: dict) -> str:
    s = t["scales"].detach()
    return (f"scales: must be > 0 (they are not log-scales), found {int((s <= 0).sum())} value(s) <= 0, "
            f"min {float(s.min()):.4g}")


def _opacities(t: dict) -> str:
    lo, hi = (float(v) for v in t["opacities"].detach().aminmax())
    return f"opacities: must lie in [0, 1] (they are not logits), got range [{lo:.4g}, {hi:.4g}]"


def _focal(t: dict) -> str:
    K = t["Ks"].detach()
    return f"Ks: focal lengths fx, fy must be > 0, got fx={K[:, 0, 0].tolist()} fy={K[:, 1, 1].tolist()}"


def _finite_message(name: str) -> Callable[[dict], str]:
    return lambda t: _non_finite(name, t[name])


_BIT = {name: i for i, name in enumerate(reference.VALUE_SEGMENTS)}
# (bit of the value_flags mask, message) in argument order: the first failing one is reported.
_RULES = [(_BIT["means"], _finite_message("means")), (_BIT["quats"], _finite_message("quats")),
          (_BIT["scales"], _finite_message("scales")), (_BIT["opacities"], _finite_message("opacities")),
          (reference.RULE_SCALES_NOT_POSITIVE, _scales),
          (reference.RULE_ZERO_QUATERNION,
           lambda t: "quats: every quaternion needs a non-zero norm, found a zero quaternion"),
          (reference.RULE_OPACITY_OUT_OF_RANGE, _opacities),
          (_BIT["viewmats"], _finite_message("viewmats")), (_BIT["Ks"], _finite_message("Ks")),
          (reference.RULE_FOCAL_NOT_POSITIVE, _focal), (_BIT["colors"], _finite_message("colors"))]


def check_values(mask: int, **tensors: Tensor) -> None:
    """Raise the ValueError of the first rule set in `mask` (from ops.value_flags over `tensors`, given by
    segment name); no-op for 0."""
    if not mask:
        return
    for bit, message in _RULES:
        if mask >> bit & 1:
            raise ValueError(message(tensors))
    raise ValueError(f"inputs: value rules failed (mask {mask:#x}) that no message describes")
