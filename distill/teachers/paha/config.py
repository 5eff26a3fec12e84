"""PAHAConfig: the shared SD-1.x video settings (sd_video/config.py: SDVideoConfig) plus PAHA's own keys (strict
YAML keys through engine.config.from_dict).

Numbers published in the PAHA paper ("PAHA: Parts-Aware Audio-Driven Human Animation with Diffusion
Model", ACM MM'25, arXiv 2505.03603) are marked [paper]:
- PAR: confidence threshold tau = 0.8, circle radius r = 10 px for hands and face, omega1 = 10 (hands, face),
  omega2 = 2 (body).                                                                                   [paper]
- PCE: masking probability 0.8.                                                                        [paper]
- SG/DG: lambda_nonface = 1, lambda_face = 0.1, lambda_diff = 0.25; guidance in the first 50% of 30 DDIM
  steps.                                                                                               [paper]
No PAHA weights are released, so the remaining sizes are this implementation's choices, stated here: the UNet uses
the SD-1.x layout (320/640/1280/1280, 2 layers, 8 heads) with AnimateDiff-style motion modules, the audio encoder is
whisper-tiny (80 mels, 4 layers, 384 wide), m = 2 neighbouring frames each side, the VAE is sd-vae-ft-mse's layout,
the prediction type is epsilon (the PAR loss is on eps; SDVideoConfig's SD-1.x DDIM schedule), the PAR smoothing
sigma is r / 2 = 5 px, and the PCE Transformer is 4 layers of width 384 with 8 heads (head width 48: 3D RoPE gives
each axis 16).
`PAHAConfig.tiny()` is a small random model for tests.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from distill.teachers.sd_video.config import SDVideoConfig

# keys that do not change the architecture or the weights (ignored when a saved folder's config is compared)
RUNTIME_KEYS = ("weights_dir", "random_init", "device", "dtype", "num_inference_steps", "context_frames",
                "context_overlap", "guidance_mode", "lambda_nonface", "lambda_face", "lambda_diff",
                "guidance_fraction", "face_box", "par_tau", "par_radius", "par_omega1", "par_omega2", "par_sigma",
                "pce_mask_prob")
GUIDANCE_MODES = ("none", "sg", "dg")


@dataclass
class PAHAConfig(SDVideoConfig):
    # weights_dir: a folder written by save_pretrained (checkpoint.py); context_frames: video frames per window
    # (UniVDM stacks the reference frame on top)
    audio_neighbors: int = 2              # m: whisper tokens of frames i-m .. i+m per video frame i
    # PAR (Parts-Aware Re-weighting)
    par_tau: float = 0.8                  # [paper]
    par_radius: float = 10.0              # [paper] pixels
    par_omega1: float = 10.0              # [paper] hands and face
    par_omega2: float = 2.0               # [paper] body
    par_sigma: float = 5.0                # Gaussian smoothing (pixels); 0 = none
    # PCE (Parts Consistency Enhancement) classifiers
    pce_dim: int = 384
    pce_heads: int = 8
    pce_layers: int = 4
    pce_mask_prob: float = 0.8            # [paper]
    # SG / DG guidance
    guidance_mode: str = "dg"             # "none" | "sg" (Sequential) | "dg" (Differential)
    lambda_nonface: float = 1.0           # [paper]
    lambda_face: float = 0.1              # [paper]
    lambda_diff: float = 0.25             # [paper]
    guidance_fraction: float = 0.5        # [paper] first 50% of the steps
    face_box: tuple[float, ...] = (0.3, 0.05, 0.7, 0.45)   # default face region (x0, y0, x1, y1) as image fractions

    def _check(self) -> None:
        super()._check()
        need = self._need
        need(self.audio_neighbors >= 0, "audio_neighbors", "expected m >= 0")
        need(self.context_frames + 1 <= self.motion_max_len, "context_frames",
             f"a window plus the reference frame must fit motion_max_len={self.motion_max_len}")
        need(0 <= self.par_tau <= 1, "par_tau", "expected a confidence in [0, 1]")
        need(self.par_radius >= 0 and self.par_sigma >= 0, "par_radius", "expected radius and sigma >= 0")
        need(self.pce_dim % self.pce_heads == 0 and (self.pce_dim // self.pce_heads) % 6 == 0, "pce_dim",
             "expected pce_dim / pce_heads divisible by 6 (3D RoPE: an even share per axis)")
        need(self.pce_layers >= 1, "pce_layers", "expected >= 1")
        need(0 <= self.pce_mask_prob <= 1, "pce_mask_prob", "expected a probability")
        need(self.guidance_mode in GUIDANCE_MODES, "guidance_mode", f"expected one of {GUIDANCE_MODES}")
        need(0 <= self.guidance_fraction <= 1, "guidance_fraction", "expected a fraction in [0, 1]")
        x0, y0, x1, y1 = self.face_box if len(self.face_box) == 4 else (0, 0, -1, -1)
        need(0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, "face_box", "expected (x0, y0, x1, y1) with 0 <= x0 < x1 <= 1")

    # --- derived -------------------------------------------------------------------------------------------------
    @property
    def audio_context(self) -> tuple[int, int]:
        """(before, after) neighbouring video frames, the form WhisperAudioFeatures reads."""
        return (self.audio_neighbors, self.audio_neighbors)

    def architecture(self) -> dict:
        """The keys that fix the weights' shapes and meaning (saved in config.json)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()
                if k not in RUNTIME_KEYS}

    # --- presets -------------------------------------------------------------------------------------------------
    @classmethod
    def tiny(cls, **overrides) -> "PAHAConfig":
        """A small random model for tests: 2 levels, 8/16 channels, 32x32 pixels, a 2-layer 16-wide whisper,
        3 DDIM steps, a 1-layer 12-wide PCE Transformer."""
        return super().tiny(**{"block_out_channels": (8, 16), "norm_num_groups": 4, "motion_max_len": 16,
                               "audio_neighbors": 1, "vae_norm_num_groups": 4, "num_inference_steps": 3,
                               "context_frames": 8, "context_overlap": 2, "par_radius": 2.0, "par_sigma": 1.0,
                               "pce_dim": 12, "pce_heads": 2, "pce_layers": 1, **overrides})
