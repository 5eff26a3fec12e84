"""VividAnimatorConfig: one flat dataclass (strict YAML keys through engine.config.from_dict).

Numbers from the VividAnimator paper (WACV 2026):
- HCC (Hand Clarity Codebook): a VQ-VAE over 256x256 hand crops, a 16x16 latent grid, 1024 codes of 256
  dimensions, commitment weight beta = 0.25; pretrained offline, frozen while the denoiser trains.
- DSAA (Dual-Stream Audio-Aware): audio windows W_a [B, F=24, T=50, D=384] (whisper-tiny width 384); the head
  stream pools over T, adapts with an MLP and cross-attends under the head mask; the lip stream attends to the
  audio in every U-Net block.
- temporal transformer over 24-frame clips; audio and image classifier-free guidance 2.5 each.
Our choices, where the paper gives no number (stated so they are not mistaken for published ones):
- the denoiser / ReferenceNet / VAE use the SD-1.x layout that EchoMimicV2 also uses (320/640/1280/1280, 8 heads,
  GroupNorm 32), and the whisper-tiny audio windows of EchoMimicV2 (2 + 1 + 2 frames x 10 steps = 50 tokens);
- DDIM with epsilon prediction and SD's scaled-linear betas, 30 steps; 512x512 frames; context overlap 4;
- lip-stream audio output scale 1.0; the head adapter MLP 384 -> 768 -> 384;
- the HCC encoder widths (64, 128, 128, 256, 256) (four stride-2 steps: 256 -> 16);
- hand heatmap sigma and box margin; the default head box (upper centre of a half-body frame) used when no head
  mask is given.
`VividAnimatorConfig.tiny()` is a small random model for tests (2 levels, 16/32 channels, 32x32 pixels).
Derived properties the reused EchoMimicV2 modules read (blocks, reference net, whisper features) are shared with
EchoMimicV2Config by reference, so both configs describe those modules the same way.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from distill.teachers.echomimic_v2.config import EchoMimicV2Config, check_unet_layout


@dataclass
class VividAnimatorConfig:
    # weights: a folder written by pipeline.save_components; random_init=True builds random weights (tests)
    weights_dir: str = ""
    random_init: bool = False
    device: str = "cpu"
    dtype: str = "float32"               # "float32" | "float16" | "bfloat16"
    # video
    width: int = 512
    height: int = 512
    fps: int = 25
    # SD-1.x UNet layout (denoiser and ReferenceNet)
    latent_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    attention_heads: int = 8
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    reference_cross_attention_dim: int = 768
    # temporal transformer (motion module)
    motion_heads: int = 8
    motion_blocks: int = 1
    motion_max_len: int = 32
    motion_mid_block: bool = True
    # hand pose encoder: heatmaps of the 21 keypoints of each hand (2 channels: left, right)
    hand_channels: int = 2
    hand_block_out_channels: tuple[int, ...] = (16, 32, 96, 256)
    hand_sigma: float = 0.01             # heatmap sigma, a fraction of the frame width
    hand_box_margin: float = 0.25        # hand box = keypoint extent, grown by this fraction on each side
    # DSAA
    audio_dim: int = 384                 # D of W_a (whisper-tiny)
    audio_feature_ratio: float = 1.0     # lip stream: scale of the audio cross-attention output
    head_adapter_hidden: int = 768
    head_audio_dim: int = 384
    head_box: tuple[float, ...] = (0.3, 0.0, 0.7, 0.45)   # default head mask (x0, y0, x1, y1), frame fractions
    # whisper-tiny encoder (EchoMimicV2's audio windows)
    whisper_mels: int = 80
    whisper_layers: int = 4
    whisper_heads: int = 6
    whisper_ffn: int = 1536
    whisper_window_seconds: int = 30
    audio_context: tuple[int, ...] = (2, 2)
    # HCC VQ-VAE (paper: 1024 codes, 256-d, 16x16 grid, 256x256 crops, beta 0.25)
    hcc_codes: int = 1024
    hcc_code_dim: int = 256
    hcc_crop: int = 256
    hcc_grid: int = 16
    hcc_beta: float = 0.25
    hcc_channels: tuple[int, ...] = (64, 128, 128, 256, 256)
    # VAE (sd-vae-ft-mse layout)
    vae_block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    vae_layers_per_block: int = 2
    vae_norm_num_groups: int = 32
    vae_scaling_factor: float = 0.18215
    # sampling (paper: audio and image CFG 2.5, 24-frame clips)
    num_inference_steps: int = 30
    audio_guidance_scale: float = 2.5
    image_guidance_scale: float = 2.5
    context_frames: int = 24
    context_overlap: int = 4
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    prediction_type: str = "epsilon"     # "epsilon" | "v_prediction"

    def __post_init__(self):
        for name in ("block_out_channels", "hand_block_out_channels", "audio_context", "hcc_channels",
                     "vae_block_out_channels"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        self.head_box = tuple(float(v) for v in self.head_box)
        self._check()

    def _check(self):
        def need(ok, key, rule):
            if not ok:
                raise ValueError(f"VividAnimatorConfig.{key}: {rule}, got {getattr(self, key)!r}")
        check_unet_layout(self, need)
        need(self.prediction_type in ("epsilon", "v_prediction"), "prediction_type",
             "expected 'epsilon' or 'v_prediction'")
        down = 2 ** (len(self.vae_block_out_channels) - 1)
        need(2 ** (len(self.hand_block_out_channels) - 1) == down, "hand_block_out_channels",
             f"the hand encoder must downsample by the VAE factor {down} (one stride-2 conv per extra level)")
        unet_down = 2 ** (len(self.block_out_channels) - 1)
        need(self.width % (down * unet_down) == 0, "width", f"expected a multiple of {down * unet_down}")
        need(self.height % (down * unet_down) == 0, "height", f"expected a multiple of {down * unet_down}")
        need(self.audio_dim % self.whisper_heads == 0, "audio_dim", "expected divisible by whisper_heads")
        need(self.context_frames > self.context_overlap >= 0, "context_overlap", "expected 0 <= overlap < frames")
        need(self.context_frames <= self.motion_max_len, "context_frames",
             f"expected <= motion_max_len={self.motion_max_len} (the temporal position encoding's length)")
        need(self.fps > 0 and 50 % self.fps == 0, "fps", "expected a divisor of 50 (whisper's 50 Hz encoder rate)")
        need(len(self.audio_context) == 2 and min(self.audio_context) >= 0, "audio_context",
             "expected (before, after) >= 0")
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

    # --- derived (shared with EchoMimicV2Config: the reused blocks, ReferenceNet and whisper features read them) ---
    vae_factor = EchoMimicV2Config.vae_factor
    time_embed_dim = EchoMimicV2Config.time_embed_dim
    down_block_types = EchoMimicV2Config.down_block_types
    up_block_types = EchoMimicV2Config.up_block_types
    audio_tokens_per_frame = EchoMimicV2Config.audio_tokens_per_frame
    reference_unet_kwargs = EchoMimicV2Config.reference_unet_kwargs
    vae_kwargs = EchoMimicV2Config.vae_kwargs

    def scheduler_kwargs(self) -> dict:
        """diffusers DDIMScheduler kwargs: SD-1.x training betas (scaled linear), eps or v prediction."""
        return dict(num_train_timesteps=self.num_train_timesteps, beta_start=self.beta_start, beta_end=self.beta_end,
                    beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                    prediction_type=self.prediction_type, timestep_spacing="leading")

    def hcc_config(self):
        from .hcc import HCCConfig
        return HCCConfig(codes=self.hcc_codes, code_dim=self.hcc_code_dim, crop=self.hcc_crop, grid=self.hcc_grid,
                         beta=self.hcc_beta, channels=self.hcc_channels)

    # --- presets -------------------------------------------------------------------------------------------------
    @classmethod
    def full(cls, **overrides) -> "VividAnimatorConfig":
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides) -> "VividAnimatorConfig":
        """A small random model for tests: 2 levels, 16/32 channels, 32x32 pixels, a 2-layer 16-wide whisper,
        an HCC of 32 codes x 16 dims on 32x32 crops (8x8 grid)."""
        base = dict(random_init=True, width=32, height=32, block_out_channels=(16, 32), layers_per_block=1,
                    attention_heads=2, norm_num_groups=8, reference_cross_attention_dim=16, motion_heads=2,
                    hand_block_out_channels=(8, 16), hand_sigma=0.05, audio_dim=16, head_adapter_hidden=32,
                    head_audio_dim=16, whisper_layers=2, whisper_heads=2, whisper_ffn=32, whisper_window_seconds=1,
                    hcc_codes=32, hcc_code_dim=16, hcc_crop=32, hcc_grid=8, hcc_channels=(8, 16, 16),
                    vae_block_out_channels=(8, 16), vae_layers_per_block=1, vae_norm_num_groups=8,
                    num_inference_steps=2)
        base.update(overrides)
        return cls(**base)

    def replace(self, **changes) -> "VividAnimatorConfig":
        return dataclasses.replace(self, **changes)
