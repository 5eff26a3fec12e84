"""LearnedMotion: the distilled audio encoder, motion DiT and refiner as one live motion source, loaded from a
model folder (audio_encoder/, motion/, refiner/: each a save_pretrained folder, the layout distill/ exports;
visemes/ when present: the viseme model of distill/visemes.py)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

from engine.audio.encoder import AudioEncoder
from engine.motion.batch import EncodeRequest, RefineRequest, run_alone
from engine.motion.dit import MotionDiT, MotionStream
from engine.pretrained import shared_model
from engine.motion.procedural import ProceduralConfig, ProceduralMotion
from engine.motion.refiner import FaceHandRefiner
from engine.motion.visemes import VisemeStream, load_viseme_model

# What the learned source takes from the procedural rig when it is given one ("alive between and during words",
# issue 19): blinks, saccades, sway and nods on loudness onsets, breathing; sampled, not predicted from audio.
# Its jaw, mouth corners and gestures stay off: the DiT and the viseme model move those.
LIFE = dict(jaw_open=0.0, corner_spread=0.0, gesture=0.0)


class LearnedMotion:
    """The distilled models as a live motion source (engine/motion/source.py): log-mel -> AudioEncoder stream
    (engine/audio/encoder.py, causal) -> MotionStream (the DiT over windows of the frames pushed so far,
    engine/motion/dit.py) -> FaceHandRefiner at the time index t (engine/motion/refiner.py). No look-ahead past
    the audio pushed. The loudness input is not used by the models: the encoder hears it.

    With `rig` (the avatar's ProceduralMotion, which knows its lips and lids), two more things join in: the viseme
    model (MODEL_DIR/visemes, audio alone) shapes the lips through engine.motion.articulate, and a procedural
    life layer (LIFE: blinks, gaze, sway and nods, breathing) is added to the models' motion. Viseme weights given
    to push() (timed marks) take the model's place on their rows."""

    def __init__(self, model_dir: str | Path, steps: int, guidance: float, seed: int,
                 rig: ProceduralMotion | None = None, life: ProceduralConfig | None = None,
                 context: int | None = None):
        """context: known frames per DiT window (engine.motion.dit.MotionStream; None = the model's overlap)."""
        root = Path(model_dir)
        if not root.is_dir():
            raise ValueError(f"model_dir: not a folder: {root}")
        self.encoder = shared_model(AudioEncoder, root / "audio_encoder")
        self.dit = shared_model(MotionDiT, root / "motion")
        self.refiner = shared_model(FaceHandRefiner, root / "refiner")
        if self.encoder.config.dim != self.dit.config.audio_dim:
            raise ValueError(f"model_dir: audio encoder dim {self.encoder.config.dim} != motion audio_dim "
                             f"{self.dit.config.audio_dim}")
        self.steps, self.guidance, self.seed, self.context = steps, guidance, seed, context
        self.rig = rig
        viseme_model = load_viseme_model(root) if rig is not None else None
        self.visemes = VisemeStream(viseme_model) if viseme_model is not None else None
        self.life = None
        if rig is not None:
            self.life = ProceduralMotion(rig.rest, rig.present, replace(life or ProceduralConfig(), **LIFE), seed)
        self.reset()

    def reset(self) -> None:
        self.enc_stream = self.encoder.stream()
        self.motion = MotionStream(self.dit, steps=self.steps, seed=self.seed, guidance=self.guidance,
                                   context=self.context)
        self.frame = 0
        if self.visemes is not None:
            self.visemes.reset()
        if self.life is not None:
            self.life.reset()

    def push(self, mel: Tensor, rms: Tensor, visemes: Tensor | None = None) -> Tensor:
        """mel [t, n_mels], rms [t] -> canonical motion [t, K_c, 3] (face units). visemes [t, V]: timed marks'
        weights (rows of NaN: none there, the viseme model's weights instead)."""
        return run_alone(self.push_steps(mel, rms, visemes))

    def push_steps(self, mel: Tensor, rms: Tensor, visemes: Tensor | None = None):
        """push as a generator that yields its network calls as requests (engine/motion/batch.py) and is sent
        their results: engine.runtime.generate_together answers those of many sessions as one batch."""
        feats = yield EncodeRequest(self.enc_stream, mel)
        x = yield from self.motion.push_steps(feats)
        t = torch.arange(self.frame, self.frame + x.shape[0])
        self.frame += x.shape[0]
        if not x.shape[0]:
            return x
        x = yield RefineRequest(self.refiner, x, feats, t)
        if self.rig is None:
            return x
        heard = None
        if self.visemes is not None:
            heard = self.visemes.weights((yield EncodeRequest(self.visemes.stream, mel)))
        with torch.no_grad():
            x = x + self.life.push(mel, rms)
            if visemes is None:
                visemes = heard
            elif heard is not None:
                visemes = torch.where(torch.isnan(visemes), heard, visemes)
            return self.rig.articulator.apply_where(x, visemes)

    def interrupt(self) -> None:
        """Barge-in: forget the speech context (encoder history and the DiT's prefix), keep the time index."""
        frame = self.frame
        life = self.life.frame if self.life is not None else 0
        self.reset()
        self.frame = frame
        if self.life is not None:
            self.life.frame = life        # blinks and sway go on where they were
