"""The clip under evaluation: frames [T, H, W, 3] uint8 at a frame rate, read from a video file or rendered
from an avatar folder for the speech (engine.runtime.AvatarEngine, 25 fps)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm


@dataclass
class Clip:
    frames: np.ndarray      # [T, H, W, 3] uint8
    fps: float
    source: str             # what it came from, for the report

    def __post_init__(self):
        f = self.frames
        if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 4 or f.shape[-1] != 3 or not len(f):
            raise ValueError(f"frames: expected a non-empty [T, H, W, 3] uint8 array, got "
                             f"{getattr(f, 'shape', type(f).__name__)} {getattr(f, 'dtype', '')}")
        if not self.fps > 0:
            raise ValueError(f"fps: expected > 0, got {self.fps}")

    @property
    def seconds(self) -> float:
        return len(self.frames) / self.fps


def read_video(path: str | Path) -> Clip:
    """Every frame of a video file (mp4, webm, ... through imageio-ffmpeg) and its frame rate."""
    import imageio.v2 as imageio

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    try:
        reader = imageio.get_reader(str(path), format="ffmpeg")
    except Exception as e:  # noqa: BLE001 - imageio raises several types for an unreadable file
        raise ValueError(f"{path}: not a readable video ({type(e).__name__}: {e})") from e
    with reader:
        fps = float(reader.get_meta_data().get("fps") or 0.0)
        frames = [np.asarray(f)[..., :3] for f in reader]
    if not frames:
        raise ValueError(f"{path}: the video has no frames")
    return Clip(np.stack(frames).astype(np.uint8), fps, str(path))


def render_avatar(avatar_dir, wave: torch.Tensor, size: int = 512, motion: str = "learned",
                  model_dir: str = "", progress: bool = True) -> Clip:
    """The avatar (a folder, or an engine.avatar.bundle.Avatar) driven by `wave` [S] (16 kHz) with the engine, one
    frame per 40 ms of audio."""
    from engine.audio.features import FPS, SAMPLE_RATE
    from engine.runtime import AvatarEngine, EngineConfig

    engine = AvatarEngine(avatar_dir, EngineConfig(width=size, height=size, motion=motion, model_dir=model_dir))
    n = engine.push_audio(wave, SAMPLE_RATE) + engine.end_audio()
    frames = [f.image for f in tqdm(engine.frames(), total=n, desc="rendering the avatar", unit="frame",
                                    disable=not progress)]
    name = str(avatar_dir) if isinstance(avatar_dir, (str, Path)) else "avatar"
    return Clip(np.stack(frames), float(FPS), f"{name} ({engine.motion_source} motion)")


def load_clip(path: str | Path, wave: torch.Tensor, size: int = 512, motion: str = "learned",
              model_dir: str = "", progress: bool = True) -> Clip:
    """A video file, or an avatar folder (from `audioavatar personalize`) rendered for `wave`."""
    path = Path(path)
    if path.is_dir():
        if not (path / "avatar.safetensors").is_file():
            raise ValueError(f"{path}: a folder, but not an avatar bundle (no avatar.safetensors); "
                             "make one with `audioavatar personalize`")
        return render_avatar(path, wave, size, motion, model_dir, progress)
    return read_video(path)
