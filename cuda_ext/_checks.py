"""Input checks for the public splatting ops: each failure is a ValueError naming the argument, the rule
and what was given, so bad input never reaches a kernel (no segfault, no silent black image)."""
from __future__ import annotations

import torch
from torch import Tensor

RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")


def _shape(t: Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def tensor(name: str, t, shape: tuple, *, finite: bool = True) -> Tensor:
    """Check `t` is a float32 tensor whose shape matches `shape` (ints fixed, None free, str = named dim)."""
    if not isinstance(t, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
    if t.dim() != len(shape) or any(isinstance(s, int) and s != d for s, d in zip(shape, t.shape)):
        raise ValueError(f"{name}: expected shape {want}, got {_shape(t)}")
    if t.dtype != torch.float32:
        raise ValueError(f"{name}: expected dtype float32, got {t.dtype}")
    # One reduction first (NaN or inf anywhere makes the sum non-finite); count only when it fails, since
    # huge finite values can also overflow the sum.
    if finite and t.numel() and not bool(torch.isfinite(t.detach().sum())):
        bad = int((~torch.isfinite(t.detach())).sum())
        if bad:
            raise ValueError(f"{name}: must be finite, found {bad} NaN/inf value(s) in a tensor of shape {_shape(t)}")
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
    """means [N, 3], quats [N, 4] wxyz non-zero, scales [N, 3] > 0, opacities [N] in [0, 1] -> N."""
    tensor("means", means, (None, 3))
    N = means.shape[0]
    tensor("quats", quats, (N, 4))
    tensor("scales", scales, (N, 3))
    tensor("opacities", opacities, (N,))
    scales, quats, opacities = scales.detach(), quats.detach(), opacities.detach()  # checks need no graph
    if N and float(scales.min()) <= 0:
        raise ValueError(f"scales: must be > 0 (they are not log-scales), found {int((scales <= 0).sum())} "
                         f"value(s) <= 0, min {float(scales.min()):.4g}")
    if N and bool((quats == 0).all(-1).any()):
        raise ValueError("quats: every quaternion needs a non-zero norm, found a zero quaternion")
    lo, hi = (float(v) for v in opacities.aminmax()) if N else (0.0, 0.0)
    if lo < 0 or hi > 1:
        raise ValueError(f"opacities: must lie in [0, 1] (they are not logits), got range [{lo:.4g}, {hi:.4g}]")
    return N


def check_cameras(viewmats: Tensor, Ks: Tensor, width, height) -> int:
    """viewmats [C, 4, 4], Ks [C, 3, 3] with fx, fy > 0, width/height > 0 -> C."""
    tensor("viewmats", viewmats, (None, 4, 4))
    C = viewmats.shape[0]
    if C == 0:
        raise ValueError("viewmats: need at least one camera, got shape [0, 4, 4]")
    tensor("Ks", Ks, (C, 3, 3))
    Ks = Ks.detach()
    if bool((Ks[:, 0, 0] <= 0).any() | (Ks[:, 1, 1] <= 0).any()):
        raise ValueError(f"Ks: focal lengths fx, fy must be > 0, got fx={Ks[:, 0, 0].tolist()} fy={Ks[:, 1, 1].tolist()}")
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
    tensor("colors", colors, shape, finite=False)
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
