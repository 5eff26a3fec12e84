"""Stills and turntables of Gaussians: framing a camera around them, a single view, and an orbit written as
mp4 with a progress bar. Gaussians come in activated form (see `Gaussians`); the pixels come from
engine/render/splat.py."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor
from tqdm import tqdm

from engine.render.away import AwayColour
from engine.render.camera import intrinsics, orbit
from engine.render.gaussians import Gaussians
from engine.render.splat import render_gaussians
from engine.render.video import Mp4Writer, write_png


@dataclass
class RenderConfig:
    """How to look at an avatar or scene (configs/render.yaml)."""
    width: int = 512
    height: int = 512
    fov_y_deg: float = 30.0
    frames: int = 100              # turntable frames for a full orbit
    fps: float = 25.0
    orbit_degrees: float = 360.0   # total sweep of the turntable
    background: float = 1.0        # grey level behind the avatar
    margin: float = 1.15           # framing: distance factor beyond a tight fit


def frame_target(means: Tensor, opacities: Tensor) -> tuple[Tensor, float]:
    """A target point (opacity-weighted median) and a radius holding most splats, for framing. means [N, 3]."""
    keep = means[opacities > 0.2] if int((opacities > 0.2).sum()) > 10 else means
    target = keep.median(dim=0).values
    radius = float((keep - target).norm(dim=-1).quantile(0.98))
    return target, max(radius, 1e-3)


def render_view(g: Gaussians, viewmat: Tensor, cfg: RenderConfig, normals: Tensor | None = None,
                away: AwayColour | None = None) -> tuple[Tensor, Tensor]:
    """One image [H, W, 3] and alpha [H, W, 1] from viewmat [4, 4], with the config's camera (normals and away:
    an avatar's culling normals and away colour, engine.render.splat.render_gaussians)."""
    K = intrinsics(cfg.width, cfg.height, cfg.fov_y_deg)
    img, alpha = render_gaussians(g, viewmat, K, cfg.width, cfg.height, cfg.background, normals, away)
    return img.clamp(0, 1), alpha


def orbit_viewmats(g: Gaussians, cfg: RenderConfig, start_deg: float = 0.0) -> list[Tensor]:
    """Camera poses of a turntable around the Gaussians, framed to fit the vertical field of view."""
    target, radius = frame_target(g.means, g.opacities)
    dist = cfg.margin * radius / math.sin(math.radians(cfg.fov_y_deg) / 2)
    step = cfg.orbit_degrees / max(cfg.frames, 1)
    return [orbit(target, dist, start_deg + i * step) for i in range(cfg.frames)]


def render_turntable(g: Gaussians, out_mp4: str | Path, cfg: RenderConfig, still_png: str | Path | None = None,
                     progress: bool = True, normals: Tensor | None = None, away: AwayColour | None = None) -> dict:
    """Writes the orbit as mp4 (and the first frame as PNG); returns paths and the measured render speed."""
    views = orbit_viewmats(g, cfg)
    times = []
    with Mp4Writer(out_mp4, cfg.width, cfg.height, cfg.fps) as video:
        for i, vm in enumerate(tqdm(views, desc="rendering turntable", unit="frame", disable=not progress)):
            t0 = time.perf_counter()
            img, _ = render_view(g, vm, cfg, normals, away)
            times.append(time.perf_counter() - t0)
            if i == 0 and still_png is not None:
                write_png(still_png, img)
            video.write(img)
    times.sort()
    return {"mp4": str(out_mp4), "png": str(still_png) if still_png else None, "frames": len(views),
            "median_render_ms": round(1e3 * times[len(times) // 2], 2)}
