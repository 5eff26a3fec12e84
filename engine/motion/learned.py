"""LearnedMotion: the distilled audio encoder, motion DiT and refiner as one live motion source, loaded from a
model folder (audio_encoder/, motion/, refiner/: each a save_pretrained folder, the layout distill/ exports)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from engine.audio.encoder import AudioEncoder
from engine.motion.dit import MotionDiT, MotionStream
from engine.motion.refiner import FaceHandRefiner


class LearnedMotion:
    """The distilled models as a live motion source (engine/motion/source.py): log-mel -> AudioEncoder stream
    (engine/audio/encoder.py, causal) -> MotionStream (the DiT over windows of the frames pushed so far,
    engine/motion/dit.py) -> FaceHandRefiner at the time index t (engine/motion/refiner.py). No look-ahead past
    the audio pushed. The loudness input is not used: the encoder hears it."""

    def __init__(self, model_dir: str | Path, steps: int, guidance: float, seed: int):
        root = Path(model_dir)
        if not root.is_dir():
            raise ValueError(f"model_dir: not a folder: {root}")
        self.encoder = AudioEncoder.from_pretrained(root / "audio_encoder")
        self.dit = MotionDiT.from_pretrained(root / "motion")
        self.refiner = FaceHandRefiner.from_pretrained(root / "refiner")
        if self.encoder.config.dim != self.dit.config.audio_dim:
            raise ValueError(f"model_dir: audio encoder dim {self.encoder.config.dim} != motion audio_dim "
                             f"{self.dit.config.audio_dim}")
        self.steps, self.guidance, self.seed = steps, guidance, seed
        self.reset()

    def reset(self) -> None:
        self.enc_stream = self.encoder.stream()
        self.motion = MotionStream(self.dit, steps=self.steps, seed=self.seed, guidance=self.guidance)
        self.frame = 0

    def push(self, mel: Tensor, rms: Tensor) -> Tensor:
        """mel [t, n_mels], rms [t] -> canonical motion [t, K_c, 3] (face units)."""
        with torch.no_grad():
            feats = self.enc_stream.push(mel)
            x = self.motion.push(feats)
            t = torch.arange(self.frame, self.frame + x.shape[0])
            self.frame += x.shape[0]
            return self.refiner(x[None], feats[None], t[None])[0] if x.shape[0] else x

    def interrupt(self) -> None:
        """Barge-in: forget the speech context (encoder history and the DiT's prefix), keep the time index."""
        frame = self.frame
        self.reset()
        self.frame = frame
