"""VividAnimatorConfig: the shared SD-1.x video settings (sd_video/config.py) plus VividAnimator's own keys (strict
YAML keys through engine.config.from_dict).

Numbers from the VividAnimator paper (WACV 2026):
- HCC (Hand Clarity Codebook): a VQ-VAE over 256x256 hand crops, a 16x16 latent grid, 1024 codes of 256
  dimensions, commitment weight beta = 0.25; pretrained offline, frozen while the denoiser trains. The hcc_* keys
  take their defaults from HCCConfig (hcc.py), which holds these numbers.
- DSAA (Dual-Stream Audio-Aware): audio windows W_a [B, F=24, T=50, D=384] (whisper-tiny width 384); the head
  stream pools over T, adapts with an MLP and cross-attends under the head mask; the lip stream attends to the
  audio in every U-Net block.
- temporal transformer over 24-frame clips; audio and image classifier-free guidance 2.5 each.
Our choices, where the paper gives no number (stated so they are not mistaken for published ones):
- the denoiser / ReferenceNet / VAE use the SD-1.x layout that EchoMimicV2 also uses (320/640/1280/1280, 8 heads,
  GroupNorm 32), and the whisper-tiny audio windows of EchoMimicV2 (2 + 1 + 2 frames x 10 steps = 50 tokens):
  the shared defaults of ReferenceVideoConfig;
- DDIM with epsilon prediction and SD's scaled-linear betas, 30 steps; 512x512 frames; context overlap 4;
- lip-stream audio output scale 1.0; the head adapter MLP 384 -> 768 -> 384;
- the HCC encoder widths (64, 128, 128, 256, 256) (four stride-2 steps: 256 -> 16);
- hand heatmap sigma and box margin; the default head box (upper centre of a half-body frame) used when no head
  mask is given.
`VividAnimatorConfig.tiny()` is a small random model for tests (2 levels, 16/32 channels, 32x32 pixels).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from distill.teachers.sd_video.config import ReferenceVideoConfig

from .hcc import HCCConfig

_HCC_KEYS = tuple("hcc_" + f.name for f in dataclasses.fields(HCCConfig))


@dataclass
class VividAnimatorConfig(ReferenceVideoConfig):
    # weights_dir: a folder written by pipeline.save_components (no weights were released)
    # hand pose encoder: heatmaps of the 21 keypoints of each hand (2 channels: left, right)
    hand_channels: int = 2
    hand_block_out_channels: tuple[int, ...] = (16, 32, 96, 256)
    hand_sigma: float = 0.01             # heatmap sigma, a fraction of the frame width
    hand_box_margin: float = 0.25        # hand box = keypoint extent, grown by this fraction on each side
    # DSAA head-aware stream (the lip stream is the shared audio cross-attention, audio_feature_ratio 1.0)
    head_adapter_hidden: int = 768
    head_audio_dim: int = 384
    head_box: tuple[float, ...] = (0.3, 0.0, 0.7, 0.45)   # default head mask (x0, y0, x1, y1), frame fractions
    # HCC VQ-VAE: HCCConfig's keys with an hcc_ prefix
    hcc_codes: int = HCCConfig.codes
    hcc_code_dim: int = HCCConfig.code_dim
    hcc_crop: int = HCCConfig.crop
    hcc_grid: int = HCCConfig.grid
    hcc_beta: float = HCCConfig.beta
    hcc_channels: tuple[int, ...] = HCCConfig.channels
    # sampling (paper: audio and image CFG 2.5, 24-frame clips)
    audio_guidance_scale: float = 2.5
    image_guidance_scale: float = 2.5
    context_frames: int = 24
    context_overlap: int = 4
    prediction_type: str = "epsilon"     # "epsilon" | "v_prediction"

    def _check(self) -> None:
        super()._check()
        need = self._need
        need(self.prediction_type in ("epsilon", "v_prediction"), "prediction_type",
             "expected 'epsilon' or 'v_prediction'")
        self._need_vae_factor("hand_block_out_channels", "hand")
        need(self.context_frames <= self.motion_max_len, "context_frames",
             f"expected <= motion_max_len={self.motion_max_len} (the temporal position encoding's length)")
        need(self.hand_channels == 2, "hand_channels", "expected 2 (one heatmap channel per hand)")
        need(self.hand_sigma > 0 and self.hand_box_margin >= 0, "hand_sigma", "expected sigma > 0, margin >= 0")
        x0, y0, x1, y1 = self.head_box if len(self.head_box) == 4 else (0, 0, -1, -1)
        need(0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, "head_box", "expected (x0, y0, x1, y1) with 0 <= x0 < x1 <= 1 "
             "and 0 <= y0 < y1 <= 1")
        need(self.hcc_codes >= 2 and self.hcc_code_dim >= 1, "hcc_codes", "expected >= 2 codes of >= 1 dims")
        need(self.hcc_crop == self.hcc_grid * 2 ** (len(self.hcc_channels) - 1), "hcc_channels",
             f"hcc_crop={self.hcc_crop} must equal hcc_grid={self.hcc_grid} x 2^(len(hcc_channels) - 1)")
        need(self.hcc_beta >= 0, "hcc_beta", "expected >= 0")
        need(self.audio_guidance_scale >= 1 and self.image_guidance_scale >= 1, "audio_guidance_scale",
             "expected both guidance scales >= 1")

    # --- derived -------------------------------------------------------------------------------------------------
    def scheduler_kwargs(self) -> dict:
        """diffusers DDIMScheduler kwargs: SD-1.x training betas (scaled linear), eps or v prediction."""
        return {**super().scheduler_kwargs(), "prediction_type": self.prediction_type}

    def hcc_config(self) -> HCCConfig:
        return HCCConfig(**{key[len("hcc_"):]: getattr(self, key) for key in _HCC_KEYS})

    # --- presets -------------------------------------------------------------------------------------------------
    @classmethod
    def tiny(cls, **overrides) -> "VividAnimatorConfig":
        """A small random model for tests: 2 levels, 16/32 channels, 32x32 pixels, a 2-layer 16-wide whisper,
        HCCConfig.tiny() (32 codes x 16 dims on 32x32 crops, an 8x8 grid)."""
        hcc = {"hcc_" + k: v for k, v in dataclasses.asdict(HCCConfig.tiny()).items()}
        return super().tiny(**{"hand_block_out_channels": (8, 16), "hand_sigma": 0.05, "head_adapter_hidden": 32,
                               "head_audio_dim": 16, **hcc, **overrides})
