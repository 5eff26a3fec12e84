"""Distillation data: speech clips in, teacher videos of the identity out, cached on disk with their audio.

    assets/speech/corpus.json ─ speech_corpus ─▶ [SpeechClip]  (bundled espeak-ng sentences + the user's files)
    teacher, photo [H, W, 3], [SpeechClip] ─ teacher_clips ─▶ [TeacherClip]  (one cache entry per clip)

The bundled corpus (scripts/make_distill_speech.sh) has a train split (10 sentences x 6 voices) and a held-out
split (4 other sentences x 2 other voices): no held-out sentence and no held-out voice is trained on. Audio files
the user adds (`extra`) join the train split with voice "user".

A cache entry is a folder `cache_dir/<clip id>-<key[:12]>/`; the key is the sha1 of everything the video depends
on (teacher class and config, photo, audio samples, seed, CACHE_VERSION). It holds
    frames.npy     [T, H, W, 3] uint8, 25 fps, T = S // 640 (read back memory-mapped)
    audio.flac     [S] the audio the teacher heard, 16 kHz mono 16-bit
    reference.png  [H, W, 3] the photo as the teacher saw it, at the frames' size
    meta.json      key, clip, teacher, config, seed, shapes, generation time
    preview.mp4    the frames with the audio muxed in (optional, for people to look at)
Entries are written to a temporary folder that is renamed into place (engine.pretrained.atomic_dir_write), so a
killed run never leaves half an entry under the final name; a folder whose meta.json is missing or does not hold
its key is generated again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from engine.audio.features import HOP, SAMPLE_RATE, load_audio
from engine.pretrained import atomic_dir_write
from engine.render.video import Mp4Writer

REPO = Path(__file__).resolve().parents[1]
SPEECH_ROOT = REPO / "assets" / "speech"
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
CACHE_VERSION = 1            # bump when the entry layout or what goes into the key changes
FPS = SAMPLE_RATE // HOP     # 25


@dataclass
class SpeechClip:
    """One speech clip: `path` to an audio file (any rate; load_audio makes it 16 kHz mono), split "train" or
    "heldout", voice (an espeak-ng voice, or "user"), text (what is said; "" when unknown)."""
    id: str
    path: Path
    split: str
    voice: str
    text: str

    def audio(self) -> Tensor:
        """-> [S] float32 at 16 kHz."""
        return load_audio(self.path)


@dataclass
class TeacherClip:
    """One cached teacher video (a folder, see the module docstring)."""
    id: str
    split: str
    audio_path: Path
    frames_path: Path
    reference_path: Path
    meta: dict = field(default_factory=dict)

    @property
    def T(self) -> int:
        return int(self.meta["frames"])

    def frames(self) -> np.ndarray:
        """-> [T, H, W, 3] uint8, memory-mapped read-only."""
        return np.load(self.frames_path, mmap_mode="r")

    def audio(self) -> Tensor:
        """-> [S] float32 at 16 kHz, S // 640 == T."""
        data, rate = sf.read(str(self.audio_path), dtype="float32")
        if rate != SAMPLE_RATE:
            raise ValueError(f"{self.audio_path}: {rate} Hz, expected {SAMPLE_RATE}")
        return torch.from_numpy(data)

    def reference(self) -> np.ndarray:
        """-> [H, W, 3] uint8: the photo as the teacher saw it, at the frames' size."""
        return np.asarray(Image.open(self.reference_path).convert("RGB"))


# ------------------------------------------------------------------------------------------------ the corpus
def _check_audio_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ValueError(f"{what}: audio file not found: {path}")
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as e:
        raise ValueError(f"{what}: {path} is not a readable audio file ({e})") from None
    if info.frames <= 0:
        raise ValueError(f"{what}: {path} holds no audio samples")
    return path


def speech_corpus(root: str | Path = SPEECH_ROOT, extra: list[str | Path] | tuple = ()) -> list[SpeechClip]:
    """root/corpus.json's clips (file paths relative to root), then the `extra` audio files (a file, or a folder
    whose .wav/.flac/.ogg/.mp3 files are taken in name order) as train clips with voice "user".
    ValueError naming the path for a missing or corrupt corpus.json, a missing or unreadable audio file."""
    root = Path(root)
    index = root / "corpus.json"
    if not index.is_file():
        raise ValueError(f"corpus: {index} not found (made by scripts/make_distill_speech.sh)")
    try:
        entries = json.loads(index.read_text())["clips"]
        clips = [SpeechClip(str(e["id"]), root / e["file"], str(e["split"]), str(e["voice"]), str(e["text"]))
                 for e in entries]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"corpus: {index} is corrupt (expected {{'clips': [{{id, file, split, voice, text, "
                         f"...}}]}}): {type(e).__name__}: {e}") from None
    for c in clips:
        if c.split not in ("train", "heldout"):
            raise ValueError(f"corpus: {index}: clip {c.id!r} has split {c.split!r}, expected 'train' or 'heldout'")
        _check_audio_file(c.path, f"corpus {index}")
    taken = {c.id for c in clips}
    if len(taken) != len(clips):
        raise ValueError(f"corpus: {index} lists a clip id twice")
    for item in extra:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
            if not files:
                raise ValueError(f"extra: folder {p} holds no {'/'.join(AUDIO_EXTENSIONS)} files")
        else:
            files = [p]
        for f in files:
            _check_audio_file(f, "extra")
            base = "user-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", f.stem)
            cid, n = base, 2
            while cid in taken:
                cid, n = f"{base}-{n}", n + 1
            taken.add(cid)
            clips.append(SpeechClip(cid, f, "train", "user", ""))
    return clips


# ------------------------------------------------------------------------------------------------ teacher videos
def _config_of(teacher) -> object:
    cfg = getattr(teacher, "config", None)
    if cfg is None:
        return None
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else repr(cfg)


def _to_pcm16(audio: np.ndarray) -> np.ndarray:
    """[S] float in [-1, 1] -> int16, the way soundfile reads it back (x / 32768): 16-bit audio round-trips."""
    return np.clip(np.round(audio.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def _reference(teacher, photo: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The photo as the teacher saw it: its prepare(photo) (an image, or an object with .image), else the photo;
    resized to size (H, W) with INTER_AREA when it differs -> [H, W, 3] uint8."""
    image = photo
    if callable(getattr(teacher, "prepare", None)):
        prepared = teacher.prepare(photo)
        image = np.asarray(getattr(prepared, "image", prepared))
    if image.shape[:2] != tuple(size):
        image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image, dtype=np.uint8)


ENTRY_FILES = ("meta.json", "frames.npy", "audio.flac", "reference.png")    # meta.json, written last, seals it


def _read_meta(folder: Path, key: str) -> dict | None:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    complete = all((folder / f).is_file() for f in ENTRY_FILES[1:])
    return meta if isinstance(meta, dict) and meta.get("key") == key and complete else None


def _write_preview(folder: Path, frames: np.ndarray, pcm: np.ndarray) -> None:
    h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2        # yuv420p wants even sizes
    with Mp4Writer(folder / "preview.mp4", w, h, FPS, audio=(pcm.astype(np.float32) / 32768.0, SAMPLE_RATE)) as v:
        for frame in frames:
            v.write(frame[:h, :w])


def teacher_clips(teacher, photo: np.ndarray, clips: list[SpeechClip], cache_dir: str | Path, seed: int = 0,
                  progress: bool = True, preview: bool = True) -> list[TeacherClip]:
    """The teacher's video of `photo` [H, W, 3] uint8 for each clip, from the cache or made now with
    `teacher.generate(photo, audio [S] 16 kHz, seed=seed)` and cached -> [TeacherClip] in the order of clips."""
    # 1. inputs
    photo = np.asarray(photo)
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise ValueError(f"photo: expected [H, W, 3] uint8, got {list(photo.shape)} {photo.dtype}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an int, got {seed!r}")
    bad = [c for c in clips if not isinstance(c, SpeechClip)]
    if bad:
        raise ValueError(f"clips: expected SpeechClip items, got {type(bad[0]).__name__}")
    cache_dir = Path(cache_dir)
    photo = np.ascontiguousarray(photo)
    # 2. what every key shares: teacher class and config, photo, seed
    head = json.dumps({"version": CACHE_VERSION, "teacher": type(teacher).__name__, "config": _config_of(teacher),
                       "photo": list(photo.shape), "seed": int(seed)}, sort_keys=True, default=repr)
    shared = hashlib.sha1(head.encode())
    shared.update(photo.tobytes())
    reference = None                                                # computed when the first clip is generated
    out = []
    for clip in tqdm(clips, desc="teacher videos", unit="clip", disable=not progress):
        # 3. the key: shared + the audio's samples
        audio = clip.audio()                                         # [S] float32, 16 kHz
        h = shared.copy()
        h.update(audio.numpy().tobytes())
        key = h.hexdigest()
        folder = cache_dir / f"{clip.id}-{key[:12]}"
        meta = _read_meta(folder, key)
        if meta is None:
            # 4. generate and write the entry atomically
            t0 = time.perf_counter()
            frames = teacher.generate(photo, audio, seed=int(seed))
            wall = time.perf_counter() - t0
            T = audio.shape[0] // HOP
            if not (isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4
                    and frames.shape[0] == T and frames.shape[3] == 3):
                raise ValueError(f"teacher {type(teacher).__name__}: generate returned "
                                 f"{getattr(frames, 'shape', type(frames))} {getattr(frames, 'dtype', '')}, "
                                 f"expected [{T}, H, W, 3] uint8 for clip {clip.id!r}")
            if reference is None or reference.shape[:2] != frames.shape[1:3]:
                reference = _reference(teacher, photo, frames.shape[1:3])
            pcm = _to_pcm16(audio.numpy())
            meta = {"key": key, "id": clip.id, "split": clip.split, "voice": clip.voice, "text": clip.text,
                    "source": str(clip.path), "teacher": type(teacher).__name__, "config": _config_of(teacher),
                    "seed": int(seed), "frames": int(T), "height": int(frames.shape[1]),
                    "width": int(frames.shape[2]), "fps": FPS, "samples": int(audio.shape[0]),
                    "sample_rate": SAMPLE_RATE, "generate_s": round(wall, 3), "version": CACHE_VERSION}

            def write(tmp: Path, frames=frames, pcm=pcm, meta=meta) -> None:
                np.save(tmp / "frames.npy", np.ascontiguousarray(frames))
                sf.write(str(tmp / "audio.flac"), pcm, SAMPLE_RATE, subtype="PCM_16")
                Image.fromarray(reference).save(tmp / "reference.png")
                if preview:
                    _write_preview(tmp, frames, pcm)
                (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=repr))    # last: the seal
            atomic_dir_write(folder, write, marker=ENTRY_FILES)     # an entry missing some of them is redone
        elif preview and not (folder / "preview.mp4").is_file():
            data, _ = sf.read(str(folder / "audio.flac"), dtype="int16")
            _write_preview(folder, np.load(folder / "frames.npy", mmap_mode="r"), data)
        out.append(TeacherClip(clip.id, clip.split, folder / "audio.flac", folder / "frames.npy",
                               folder / "reference.png", meta))
    return out
