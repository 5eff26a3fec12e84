"""PAHAConfig: one flat dataclass (strict YAML keys through engine.config.from_dict).

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
the prediction type is epsilon (the PAR loss is on eps), the PAR smoothing sigma is r / 2 = 5 px, and the PCE
Transformer is 4 layers of width 384 with 8 heads (head width 48: 3D RoPE gives each axis 16).
`PAHAConfig.tiny()` is a small random model for tests.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from distill.teachers.echomimic_v2.config import EchoMimicV2Config, check_unet_layout

# keys that do not change the architecture or the weights (ignored when a saved folder's config is compared)
RUNTIME_KEYS = ("weights_dir", "random_init", "device", "dtype", "num_inference_steps", "context_frames",
                "context_overlap", "guidance_mode", "lambda_nonface", "lambda_face", "lambda_diff",
                "guidance_fraction", "face_box", "par_tau", "par_radius", "par_omega1", "par_omega2", "par_sigma",
                "pce_mask_prob")
GUIDANCE_MODES = ("none", "sg", "dg")


@dataclass
class PAHAConfig:
    # weights: a folder written by save_pretrained (checkpoint.py); random_init=True builds random weights (tests)
    weights_dir: str = ""
    random_init: bool = False
    device: str = "cpu"
    dtype: str = "float32"                # "float32" | "float16" | "bfloat16"
    # video
    width: int = 512
    height: int = 512
    fps: int = 25
    # UniVDM: SD-1.x UNet layout + motion modules; reference frame stacked in front of the video frames
    latent_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    attention_heads: int = 8
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    motion_heads: int = 8
    motion_blocks: int = 1
    motion_max_len: int = 32
    motion_mid_block: bool = True
    # audio: whisper-tiny encoder, +-m neighbouring video frames per frame
    audio_dim: int = 384
    whisper_mels: int = 80
    whisper_layers: int = 4
    whisper_heads: int = 6
    whisper_ffn: int = 1536
    whisper_window_seconds: int = 30
    audio_neighbors: int = 2              # m
    audio_feature_ratio: float = 1.0      # scale of the audio cross-attention output
    # VAE (sd-vae-ft-mse layout)
    vae_block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    vae_layers_per_block: int = 2
    vae_norm_num_groups: int = 32
    vae_scaling_factor: float = 0.18215
    # diffusion (DDIM, epsilon prediction)
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    num_inference_steps: int = 30         # [paper]
    context_frames: int = 12              # video frames per window (the reference frame comes on top)
    context_overlap: int = 3
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

    def __post_init__(self):
        for name in ("block_out_channels", "vae_block_out_channels"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        self.face_box = tuple(float(v) for v in self.face_box)
        self._check()

    def _check(self):
        def need(ok, key, rule):
            if not ok:
                raise ValueError(f"PAHAConfig.{key}: {rule}, got {getattr(self, key)!r}")
        check_unet_layout(self, need)
        total = self.vae_factor * 2 ** (len(self.block_out_channels) - 1)
        need(self.width % total == 0, "width", f"expected a multiple of {total}")
        need(self.height % total == 0, "height", f"expected a multiple of {total}")
        need(self.fps > 0 and 50 % self.fps == 0, "fps", "expected a divisor of 50 (whisper's 50 Hz encoder rate)")
        need(self.audio_neighbors >= 0, "audio_neighbors", "expected m >= 0")
        need(self.audio_dim % self.whisper_heads == 0, "audio_dim", "expected divisible by whisper_heads")
        need(self.context_frames > self.context_overlap >= 0, "context_overlap", "expected 0 <= overlap < frames")
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
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae_block_out_channels) - 1)

    @property
    def time_embed_dim(self) -> int:
        return self.block_out_channels[0] * 4

    @property
    def audio_context(self) -> tuple[int, int]:
        """(before, after) neighbouring video frames, the form WhisperAudioFeatures reads."""
        return (self.audio_neighbors, self.audio_neighbors)

    @property
    def audio_tokens_per_frame(self) -> int:
        """(2m + 1) frames x L tokens, L = (50 / fps) encoder steps x (layers + 1) hidden states."""
        return (2 * self.audio_neighbors + 1) * (50 // self.fps) * (self.whisper_layers + 1)

    @property
    def latent_hw(self) -> tuple[int, int]:
        return self.height // self.vae_factor, self.width // self.vae_factor

    def architecture(self) -> dict:
        """The keys that fix the weights' shapes and meaning (saved in config.json)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()
                if k not in RUNTIME_KEYS}

    def scheduler_kwargs(self) -> dict:
        """diffusers DDIMScheduler kwargs: SD-1.x scaled-linear betas, epsilon prediction."""
        return dict(num_train_timesteps=self.num_train_timesteps, beta_start=self.beta_start, beta_end=self.beta_end,
                    beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                    prediction_type="epsilon")

    # the VAE's diffusers kwargs from the same vae_* keys: EchoMimicV2Config's method serves both
    vae_kwargs = EchoMimicV2Config.vae_kwargs

    # --- presets -------------------------------------------------------------------------------------------------
    @classmethod
    def full(cls, **overrides) -> "PAHAConfig":
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides) -> "PAHAConfig":
        """A small random model for tests: 2 levels, 8/16 channels, 32x32 pixels, a 2-layer 16-wide whisper,
        3 DDIM steps, a 1-layer 12-wide PCE Transformer."""
        base = dict(random_init=True, width=32, height=32, block_out_channels=(8, 16), layers_per_block=1,
                    attention_heads=2, norm_num_groups=4, motion_heads=2, motion_max_len=16, audio_dim=16,
                    whisper_layers=2, whisper_heads=2, whisper_ffn=32, whisper_window_seconds=1, audio_neighbors=1,
                    vae_block_out_channels=(8, 16), vae_layers_per_block=1, vae_norm_num_groups=4,
                    num_inference_steps=3, context_frames=8, context_overlap=2, par_radius=2.0, par_sigma=1.0,
                    pce_dim=12, pce_heads=2, pce_layers=1)
        base.update(overrides)
        return cls(**base)

    def replace(self, **changes) -> "PAHAConfig":
        return dataclasses.replace(self, **changes)
