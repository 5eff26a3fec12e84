"""Writing frames to disk: PNG stills and H.264 mp4 (ffmpeg from the imageio-ffmpeg wheel, so no system
ffmpeg is needed), written to a temporary name and renamed, so a failed write never leaves half a file."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from engine.pretrained import atomic_file_write


def to_uint8(frame) -> np.ndarray:
    """[H, W, 3] float in [0, 1] (tensor or array) -> uint8 array."""
    a = frame.detach().cpu().numpy() if hasattr(frame, "detach") else np.asarray(frame)
    return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_png(path: str | Path, frame) -> Path:
    """frame [H, W, 3] in [0, 1] -> a PNG at path, written atomically (engine.pretrained.atomic_file_write)."""
    image = Image.fromarray(to_uint8(frame))
    return atomic_file_write(path, lambda f: image.save(f, format="PNG"))


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


AAC_KBPS_PER_CHANNEL, AAC_MAX_RATE = 96, 96000     # 96 kb/s a channel: transparent-ish for speech; AAC's top rate


def _aac_options(audio: Path | str) -> list[str]:
    """Bit rate for the sound file's channel count; its own sample rate is kept unless AAC cannot carry it."""
    import soundfile as sf
    info = sf.info(str(audio))
    opts = ["-b:a", f"{min(AAC_KBPS_PER_CHANNEL * info.channels, 320)}k"]
    return opts + (["-ar", "48000"] if info.samplerate > AAC_MAX_RATE else [])


class Mp4Writer:
    """Streams uint8 frames [H, W, 3] into an H.264 mp4 at `fps`. `audio` is muxed in if given: a sound file's
    path (kept as it is: its sample rate and channels, AAC at 96 kb/s a channel), or (samples [S] float in
    [-1, 1], sample rate), written to a temporary wav that is removed on close.
    Use as a context manager; the file appears under its final name only when closing succeeds."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float = 25.0, audio=None):
        if width % 2 or height % 2:
            raise ValueError(f"mp4 needs even frame sizes for yuv420p, got {width}x{height}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp.mp4")
        self.tmp_wav = None
        if isinstance(audio, tuple):
            import soundfile as sf
            samples, rate = audio
            self.tmp_wav = audio = self.path.with_name(f".{self.path.name}.tmp.wav")
            sf.write(str(audio), np.asarray(samples, dtype=np.float32), int(rate))
        self.size = (width, height)
        cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", str(fps), "-i", "-"]
        if audio is not None:
            cmd += ["-i", str(audio), "-c:a", "aac", *_aac_options(audio), "-shortest"]
        cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-preset", "veryfast",
                "-movflags", "+faststart", str(self.tmp)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def write(self, frame) -> None:
        a = frame if isinstance(frame, np.ndarray) and frame.dtype == np.uint8 else to_uint8(frame)
        if a.shape != (self.size[1], self.size[0], 3):
            raise ValueError(f"frame: expected shape {(self.size[1], self.size[0], 3)}, got {a.shape}")
        self.proc.stdin.write(np.ascontiguousarray(a).tobytes())

    def close(self, ok: bool = True) -> None:
        self.proc.stdin.close()
        err = self.proc.stderr.read().decode(errors="replace")
        code = self.proc.wait()
        if self.tmp_wav is not None:
            self.tmp_wav.unlink(missing_ok=True)
        if ok and code == 0:
            os.replace(self.tmp, self.path)
            return
        self.tmp.unlink(missing_ok=True)
        if ok:
            raise RuntimeError(f"ffmpeg failed writing {self.path} (exit {code}): {err.strip()}")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(ok=exc_type is None)
