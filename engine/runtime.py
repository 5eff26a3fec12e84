"""AvatarEngine: live audio in, rendered 25 fps frames out, for one avatar and one listener.

Data path, one step per call:
    push_audio(pcm, rate)  -> engine.audio.features.AudioStream: log-mel [t, n_mels] + RMS [t], one row per 40 ms
                              frame -> queued; when frames are taken, the motion source (engine.motion.source)
                              runs on everything queued:
                                procedural  engine.motion.procedural.ProceduralMotion
                                learned     engine.motion.learned.LearnedMotion: AudioEncoder -> MotionStream (DiT,
                                            DDIM, windowed) -> FaceHandRefiner (time index t)
                              motion [t, K_c, 3] in face units, queued with the frame's 16 kHz audio
    frames() / aframes()   -> engine.view.AvatarView of the current camera: canonical slots -> this avatar's
                              particles (x face unit) -> the avatar's decoder (GaussianDecoder.deform) -> splat
                              -> Frame(uint8 image, pts, audio)
    next_motion()          -> instead of rendering, the frame's deformation inputs for a client that splats the
                              packed avatar itself (engine/avatar/splat_pack.py): MotionFrame(particle
                              translations, decoder deltas, limb-bone rotations, audio)

A frame exists as soon as its 40 ms of audio has arrived (no look-ahead), so latency is one frame period plus
compute. `interrupt()` (barge-in) drops queued speech and closes the mouth on the next frame; `push_silence()`
keeps an idle avatar breathing and blinking between utterances. The camera can change at any time
(`set_orbit`, `set_camera`); it applies to frames rendered after the call.
"""
from __future__ import annotations

import asyncio
import math
import threading
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from engine._alloc import keep_freed_memory
from engine.audio.features import HOP, SAMPLE_RATE, AudioStream, Resampler, to_mono
from engine.avatar.bundle import Avatar
from engine.avatar.limbs import LimbRig
from engine.motion.batch import run_alone, run_together
from engine.motion.learned import LearnedMotion
from engine.motion.procedural import ProceduralConfig, ProceduralMotion
from engine.motion.source import MotionSource
from engine.motion.visemes import ALPHABETS, FPS as VISEME_FPS, VISEMES, marks_to_weights
from engine.render.camera import look_at
from engine.view import AvatarView

FPS = SAMPLE_RATE // HOP
MOTION_SOURCES = ("procedural", "learned")
# The distilled models shipped with the project (models/default/README.md: how they were trained).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"
MAX_BATCH = 24        # feature frames moved per motion-source call (one DiT window's new part by default)
MAX_MARKS_HELD = 20000   # timed marks (push_marks) waiting for their frames; more is refused


def generate_together(engines: list["AvatarEngine"]) -> int:
    """Move every given engine's waiting feature frames (up to MAX_BATCH each) through its motion source at
    once: the learned sources' network calls (audio encoder, DiT windows, refiner, viseme model) run as one batch
    per kind (engine/motion/batch.py): for a live session each costs about as much for one frame as for ten
    sessions' frames together. Each engine comes out as if it had generated alone, up to float rounding.
    -> the number of engines that generated."""
    held = []
    try:
        for e in sorted(set(engines), key=id):           # one order for every caller: no deadlock
            e._lock.acquire()
            held.append(e)
        moving = [e for e in held if e._features]
        run_together([e._generate_steps() for e in moving])
        return len(moving)
    finally:
        for e in held:
            e._lock.release()


@dataclass
class EngineConfig:
    """configs/engine.yaml"""
    width: int = 512
    height: int = 512
    motion: str = "learned"      # "learned" (the distilled models) or "procedural" (the rule-based fallback)
    model_dir: str = ""          # learned: folder with audio_encoder/, motion/, refiner/ (save_pretrained each);
                                 # "" = the bundled models/default (procedural, with a warning, if it is missing)
    steps: int = 4               # learned: DDIM steps
    context: int = 0             # learned: known frames before the new ones in each DiT window (1..the model's
                                 # overlap, 8 shipped); 0 = the model's overlap. Fewer: cheaper per frame (4: -16%
                                 # on a busy server, docs/scaling.md), as smooth, 6% different motion
    guidance: float = 1.0        # learned: classifier-free guidance scale
    seed: int = 0
    background: float = 1.0      # grey level behind the avatar
    threads: int = 0             # torch threads for this process; 0 leaves torch's default
    gesture_dir: str = ""        # text gesture commands (command()): a gesture prior folder (engine/motion/versa);
                                 # "" = the bundled models/versa
    alive: bool = True           # learned: add the procedural life layer (blinks, gaze, sway, nods, breathing) and
                                 # the viseme model's lip shapes (engine/motion/learned.py); false: the models alone

    def __post_init__(self):
        if self.motion not in MOTION_SOURCES:
            raise ValueError(f"motion: expected one of {MOTION_SOURCES}, got {self.motion!r}")
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise ValueError(f"width/height: expected even sizes >= 16, got {self.width}x{self.height}")
        if self.steps < 1:
            raise ValueError(f"steps: expected >= 1, got {self.steps}")
        if not isinstance(self.context, int) or self.context < 0:
            raise ValueError(f"context: expected an int >= 0 (0 = the model's overlap), got {self.context!r}")


@dataclass
class Frame:
    index: int          # frame number since the engine started (25 fps)
    pts: float          # presentation time in seconds = index / 25, on the clock of the audio pushed
    image: np.ndarray   # [H, W, 3] uint8
    audio: np.ndarray   # [640] float32, the 16 kHz audio this frame shows
    speaking: bool      # False for silence pushed by push_silence() or after interrupt()


@dataclass
class MotionFrame:
    """A frame for a client that deforms and renders the avatar itself (engine/avatar/splat_pack.py): what the
    server sends instead of an image (viewer/protocol.py's motion message)."""
    index: int
    pts: float
    translation: np.ndarray      # [K, 3] float32, world units: particle motion + the decoder's d_mean
    deltas: np.ndarray | None    # [K, 10] float32: d_rotvec, d_log_scale, d_color (RGB), d_opacity; None = all 0
    bones: np.ndarray | None     # [B + 1, 4] float32 wxyz limb-bone rotations (last: the torso); None = no bones
    audio: np.ndarray            # [640] float32, the 16 kHz audio this frame shows
    speaking: bool


class AvatarEngine:
    def __init__(self, avatar: Avatar | str | Path, cfg: EngineConfig = EngineConfig()):
        """avatar: an Avatar, or its folder; its trained decoder deforms it (Avatar.deformer: the rest pose
        when it has none)."""
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        keep_freed_memory()                  # per-frame buffers stay in the heap (engine._alloc)
        self.avatar = avatar if isinstance(avatar, Avatar) else Avatar.from_pretrained(avatar)
        self.cfg = cfg
        a = self.avatar
        self.decoder = a.deformer()
        # camera: the photo's, rescaled to the output size
        self.K = a.camera.scaled_K(cfg.width, cfg.height)
        self.viewmat = a.camera.viewmat.clone().float()
        solid = a.gaussians.opacities > 0.5
        self.pivot = torch.tensor([0.0, 0.0, float(a.gaussians.means[solid, 2].median())])
        self._view: AvatarView | None = None
        self._bone_rig: LimbRig | None = None   # client_motion's bone rotations (the whole avatar's bones)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.procedural_cfg = ProceduralConfig()
        self._prior = None                   # the gesture prior, loaded by the first command()
        self.motion_source = cfg.motion
        self.model_dir = Path(cfg.model_dir) if cfg.model_dir else DEFAULT_MODEL_DIR
        if cfg.motion == "learned" and not cfg.model_dir and not (DEFAULT_MODEL_DIR / "motion").is_dir():
            warnings.warn(f"the bundled motion models are missing ({DEFAULT_MODEL_DIR}); using the procedural "
                          "motion instead", stacklevel=2)
            self.motion_source = "procedural"
        self.reset()

    # -- input -----------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget all audio and motion; the next frame is frame 0."""
        with self._lock:
            self._audio = None
            self._rate = None
            self._features: deque = deque()     # (mel [n_mels], rms [], audio [640], speaking) not yet moved
            self._queue: deque = deque()        # (motion [K_c, 3], audio [640], speaking) not yet rendered
            self._gesture: deque = deque()      # motion [K_c, 3] a text command adds to the next frames
            self._pending16k = np.zeros(0, np.float32)
            self.index = 0
            self._utterance: int | None = None   # frame index where the utterance being pushed began
            self._marks: list = []               # (first frame, last frame, alphabet, marks) from push_marks
            self._early_marks: list = []         # (alphabet, marks, end_s) sent before their utterance's audio
            rig = ProceduralMotion.for_avatar(self.avatar, self.procedural_cfg, self.cfg.seed)
            self.source: MotionSource = (
                rig if self.motion_source == "procedural"
                else LearnedMotion(self.model_dir, self.cfg.steps, self.cfg.guidance, self.cfg.seed,
                                   rig=rig if self.cfg.alive else None, life=self.procedural_cfg,
                                   context=self.cfg.context or None))

    def push_audio(self, pcm, sample_rate: int = SAMPLE_RATE, speaking: bool = True) -> int:
        """Queue speech: pcm [s] or [s, channels] (float in [-1, 1] or int16) at sample_rate. Any chunk size; a
        new sample rate starts a new stream. Returns how many new frames became available."""
        if not isinstance(sample_rate, int) or not 1000 <= sample_rate <= 384000:
            raise ValueError(f"sample_rate: expected an int in 1000..384000, got {sample_rate!r}")
        mono = to_mono(pcm)
        with self._lock:
            flushed = 0
            if self._rate != sample_rate:
                flushed = self._flush_locked()
                self._audio, self._echo, self._rate = AudioStream(sample_rate), Resampler(sample_rate), sample_rate
            if not speaking:
                self._utterance = None
            elif self._utterance is None and mono.shape[0]:
                # the utterance starts in the next frame to be queued (within one frame: audio held back in the
                # open stream's last partial frame counts as before it)
                self._utterance = self._next_frame_locked()
                for alphabet, marks, end_s in self._early_marks:       # marks sent before their audio
                    self._bind_marks_locked(alphabet, marks, end_s)
                self._early_marks = []
            mel, rms = self._audio.push(mono)
            echo = self._echo.push(mono)
            return flushed + self._enqueue_locked(mel, rms, echo, speaking)

    def push_silence(self, seconds: float) -> int:
        """Idle time with no speech: the avatar breathes, blinks and sways. The silence continues the open
        stream at its own rate (no flush, so no partial frame is cut off); 16 kHz when none is open."""
        rate = self._rate or SAMPLE_RATE
        return self.push_audio(np.zeros(int(round(seconds * rate)), np.float32), rate, speaking=False)

    def end_audio(self) -> int:
        """The stream is over: emit the frames still held back by the resampler."""
        with self._lock:
            self._utterance = None
            return self._flush_locked()

    def push_marks(self, marks, alphabet: str) -> int:
        """Timed phoneme or viseme marks of the utterance being pushed (or of the next one, when none is):
        marks [(start_s, end_s, symbol)], times from the utterance's first audio sample, alphabet one of
        engine.motion.visemes.ALPHABETS ("microsoft" for Azure's viseme ids, "polly", "arpabet", "espeak",
        "viseme"). Over the time they span the mouth follows them exactly instead of what the audio suggests
        (docs/protocol.md, `marks`). Several calls for one utterance add up. Returns how many marks were taken.
        ValueError names a bad mark or alphabet; nothing is kept then."""
        if alphabet not in ALPHABETS:
            raise ValueError(f"alphabet: expected one of {ALPHABETS}, got {alphabet!r}")
        if not isinstance(marks, (list, tuple)):
            raise ValueError(f"marks: expected a list of [start_s, end_s, symbol], got {type(marks).__name__}")
        marks = [tuple(m) if isinstance(m, (list, tuple)) else m for m in marks]
        marks_to_weights(marks, 0, alphabet)                  # validates every mark (0 frames: nothing else)
        if not marks:
            return 0
        end_s = max(float(m[1]) for m in marks)
        with self._lock:
            held = sum(len(m[-1]) for m in self._marks) + sum(len(m[1]) for m in self._early_marks)
            if held + len(marks) > MAX_MARKS_HELD:
                raise ValueError(f"marks: {held} marks are already waiting for their frames; at most "
                                 f"{MAX_MARKS_HELD} may wait (send them as the speech goes)")
            if self._utterance is None:
                self._early_marks.append((alphabet, marks, end_s))   # bound when the utterance's audio starts
            else:
                self._bind_marks_locked(alphabet, marks, end_s)
        return len(marks)

    def _bind_marks_locked(self, alphabet: str, marks: list, end_s: float) -> None:
        first = self._utterance
        self._marks.append((first, first + int(math.ceil(end_s * VISEME_FPS)), alphabet, marks))

    def _next_frame_locked(self) -> int:
        """The index the next feature frame will get (frames are numbered in the order they are queued)."""
        return self.index + len(self._queue) + len(self._features)

    def _visemes_locked(self, first: int, n: int) -> Tensor | None:
        """Viseme weights [n, V] for frames first..first+n-1 from the marks (NaN rows where none apply)."""
        self._marks = [m for m in self._marks if m[1] >= first]
        if not self._marks:
            return None
        out = torch.full((n, len(VISEMES)), float("nan"))
        frames = torch.arange(first, first + n)
        for start, end, alphabet, marks in self._marks:
            w = marks_to_weights(marks, n, alphabet, offset_s=(first - start) / VISEME_FPS)
            rows = (frames >= start - 2) & (frames <= end)
            out[rows] = w[rows]
        return out

    def interrupt(self) -> int:
        """Barge-in: drop every queued frame not yet rendered and close the mouth now. Returns frames dropped."""
        with self._lock:
            dropped = len(self._queue) + len(self._features)
            self._queue.clear()
            self._features.clear()
            self._pending16k = np.zeros(0, np.float32)
            if self._audio is not None:
                self._audio, self._echo = AudioStream(self._rate), Resampler(self._rate)
            self._utterance, self._marks, self._early_marks = None, [], []
            self.source.interrupt()
            return dropped

    def command(self, text: str) -> int:
        """A text gesture command ("raise right hand", "wave left hand", ...; engine.motion.versa.commands.COMMANDS)
        shapes the body over the next window: the frames whose motion is generated after this call (frames
        already generated keep theirs). A new command replaces one still running. The arm a command names turns
        about its shoulder to a raised pose and the other arm keeps still (engine.motion.versa.arms). Returns the
        window's length in frames. ValueError for a word outside the vocabulary, or when no gesture prior is installed."""
        from engine.motion.versa.arms import arm_gesture
        from engine.motion.versa.commands import text_features
        text_features(text)                                  # validate before loading anything
        prior = self._gesture_prior()
        gesture = prior.gesture(text)                        # [W, K_c, 3] face units
        a = self.avatar                                      # the named arm turns about its shoulder, the other rests
        gesture = arm_gesture(text, gesture, a.particles, a.particle_names, self.view().to_canonical)
        with self._lock:
            self._gesture = deque(gesture.unbind(0))
        return int(gesture.shape[0])

    def _gesture_prior(self):
        if self._prior is None:
            from engine.motion.versa.prior import DEFAULT_DIR, GesturePrior
            folder = Path(self.cfg.gesture_dir) if self.cfg.gesture_dir else DEFAULT_DIR
            if not folder.is_dir():
                raise ValueError(f"gesture_dir: no gesture prior at {folder} (train one: python -m distill.versa -o "
                                 f"{folder})")
            self._prior = GesturePrior.from_pretrained(folder)
        return self._prior

    def _flush_locked(self) -> int:
        if self._audio is None:
            return 0
        mel, rms = self._audio.flush()
        echo = self._echo.flush()
        n = self._enqueue_locked(mel, rms, echo, True)
        self._audio = self._echo = self._rate = None
        return n

    def _enqueue_locked(self, mel: Tensor, rms: Tensor, echo: Tensor, speaking: bool) -> int:
        """Queue the new feature frames with their 16 kHz audio; motion is generated when frames are taken,
        in one batch for everything queued, so a slow consumer gets bigger (cheaper per frame) batches."""
        self._pending16k = np.concatenate([self._pending16k, np.asarray(echo, np.float32)])
        for i in range(mel.shape[0]):
            chunk = self._pending16k[:HOP]
            self._pending16k = self._pending16k[HOP:]
            if chunk.shape[0] < HOP:
                chunk = np.pad(chunk, (0, HOP - chunk.shape[0]))
            self._features.append((mel[i], rms[i], chunk, speaking))
        if mel.shape[0]:
            self._wake.set()
        return int(mel.shape[0])

    def _generate_locked(self) -> None:
        """Run the motion source over up to MAX_BATCH queued feature frames."""
        run_alone(self._generate_steps())

    def _generate_steps(self):
        """_generate_locked as a generator (the lock held by the caller): it yields the network calls of a
        source that has them (LearnedMotion.push_steps; engine/motion/batch.py) and is sent their results, so
        `generate_together` can answer those of many engines as one batch."""
        first = self.index + len(self._queue)
        batch = [self._features.popleft() for _ in range(min(len(self._features), MAX_BATCH))]
        if not batch:
            return
        visemes = self._visemes_locked(first, len(batch))
        mel, rms = torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])
        args = (mel, rms, visemes) if visemes is not None else (mel, rms)
        steps = getattr(self.source, "push_steps", None)
        motion = (yield from steps(*args)) if steps is not None else self.source.push(*args)
        for m, (_, _, audio, speaking) in zip(motion, batch):
            if self._gesture:
                m = m + self._gesture.popleft()
            self._queue.append((m, audio, speaking))

    def needs_motion(self) -> bool:
        """Feature frames wait and no motion is queued: taking a frame now would run the motion source (a hint,
        read without the lock)."""
        return not self._queue and bool(self._features)

    def batchable(self) -> bool:
        """Its motion source runs networks (the learned models) whose calls generate_together can batch."""
        return hasattr(self.source, "push_steps")

    # -- camera ----------------------------------------------------------------------------------------
    def set_camera(self, viewmat: Tensor, K: Tensor | None = None) -> None:
        """viewmat [4, 4] world -> camera (OpenCV axes); K [3, 3] for the output size (default: unchanged)."""
        if viewmat.shape != (4, 4) or (K is not None and K.shape != (3, 3)):
            raise ValueError(f"viewmat/K: expected [4, 4] and [3, 3], got {list(viewmat.shape)}"
                             f"{'' if K is None else ' and ' + str(list(K.shape))}")
        self.viewmat = viewmat.float().clone()
        if K is not None:
            self.K = K.float().clone()

    def set_orbit(self, yaw_deg: float, pitch_deg: float = 0.0, zoom: float = 1.0) -> None:
        """Orbit the photo camera around the avatar: yaw left/right, pitch up/down (degrees), zoom > 1 closer."""
        if not (math.isfinite(yaw_deg) and math.isfinite(pitch_deg) and math.isfinite(zoom) and zoom > 0):
            raise ValueError(f"yaw/pitch/zoom: expected finite numbers and zoom > 0, got {yaw_deg}, {pitch_deg}, {zoom}")
        pitch = max(min(pitch_deg, 80.0), -80.0)
        d = float(self.pivot[2]) / zoom
        a, p = math.radians(yaw_deg), math.radians(pitch)
        eye = self.pivot + d * torch.tensor([math.sin(a) * math.cos(p), -math.sin(p), -math.cos(a) * math.cos(p)])
        self.viewmat = look_at(eye, self.pivot)

    # -- output ----------------------------------------------------------------------------------------
    def pending(self) -> int:
        """Frames whose audio has arrived but that are not rendered yet. Read without the lock (the server's event
        loop asks often): while the motion source runs, the frames it is moving count in neither queue."""
        return len(self._queue) + len(self._features)

    def frame_count(self) -> int:
        """Every frame queued so far, taken or waiting (index + pending), counted under the lock: exact."""
        with self._lock:
            return self.index + len(self._queue) + len(self._features)

    def view(self) -> AvatarView:
        """The current camera on the avatar (engine/view.py), rebuilt when the camera has moved: culling
        first means the decoder and the rasterizer only see what can show."""
        v = self._view
        if v is None or not (torch.equal(v.viewmat, self.viewmat) and torch.equal(v.K, self.K)):
            v = self._view = AvatarView(self.avatar, self.viewmat, self.K, self.cfg.width, self.cfg.height,
                                        self.cfg.background)
        return v

    def render_motion(self, motion: Tensor) -> np.ndarray:
        """Canonical motion [K_c, 3] (face units) -> uint8 image [H, W, 3] from the current camera."""
        with torch.no_grad():
            view = self.view()
            img, _, _ = view.splat(self.decoder, view.to_world(motion))
        return img.clamp_(0, 1).mul_(255).add_(0.5).to(torch.uint8).numpy()

    def _take(self, generate: bool = True):
        """(index, (motion, audio, speaking)) of the oldest queued frame, its index used up; None when empty
        (generate: run the motion source first when no motion is queued)."""
        with self._lock:
            if not self._queue and generate:
                self._generate_locked()
            if not self._queue:
                self._wake.clear()
                return None
            self.index += 1
            return self.index - 1, self._queue.popleft()

    def next_frame(self) -> Frame | None:
        """Render the oldest queued frame, or None when nothing is queued."""
        taken = self._take()
        if taken is None:
            return None
        index, (motion, audio, speaking) = taken
        return Frame(index, index / FPS, self.render_motion(motion), audio, speaking)

    def next_motion(self) -> MotionFrame | None:
        """The oldest queued frame as motion for a client-side renderer (no rendering here), or None."""
        taken = self._take()
        if taken is None:
            return None
        index, (motion, audio, speaking) = taken
        translation, deltas, bones = self.client_motion(motion)
        return MotionFrame(index, index / FPS, translation, deltas, bones, audio, speaking)

    def client_motion(self, motion: Tensor) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Canonical motion [K_c, 3] (face units) -> (translation [K, 3], deltas [K, 10] or None, bones
        [B + 1, 4] or None): the per-particle inputs of the deformation AvatarView.splat does (decoder, then limb
        bones), for a client that applies them to the packed avatar (MotionFrame)."""
        with torch.no_grad():
            world = self.view().to_world(motion)                                       # [K, 3]
            d = self.decoder(world[None])[0]                                           # [K, 13]
            translation = (world + d[:, 0:3]).float().numpy()
            deltas = d[:, 3:].float().numpy() if bool(d[:, 3:].any()) else None
            bones = None
            if self.avatar.bones is not None:
                if self._bone_rig is None:
                    a = self.avatar
                    self._bone_rig = LimbRig(a.particles, a.particle_names, a.gaussians.means, a.bones)
                if self._bone_rig:
                    bones = self._bone_rig.rotations(world).float().numpy()
        return translation, deltas, bones

    def skip_frame(self, generate: bool = True) -> bool:
        """Drop the oldest queued frame unrendered (a live session that fell behind catches up this way): its
        motion is still generated, so the stream stays continuous, and its index is used up. False when empty.
        generate=False: only frames whose motion is already made (a server batching the motion makes the rest
        with the other sessions', viewer/pacing.py)."""
        return self._take(generate) is not None

    def frames(self):
        """Every frame available now (sync generator)."""
        while (frame := self.next_frame()) is not None:
            yield frame

    async def aframes(self, stop: asyncio.Event | None = None):
        """Frames as their audio arrives (async generator); rendering runs in a worker thread. Ends when `stop`
        is set (if given)."""
        while stop is None or not stop.is_set():
            frame = await asyncio.to_thread(self.next_frame)
            if frame is not None:
                yield frame
                continue
            await asyncio.to_thread(self._wake.wait, 0.05)
