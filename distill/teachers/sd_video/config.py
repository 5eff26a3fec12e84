"""The settings the SD-1.x video-diffusion teachers share, declared once (strict YAML keys through
engine.config.from_dict):
    SDVideoConfig          U-Net layout, motion modules, whisper-tiny audio, VAE and DDIM sampling (PAHA subclasses it)
    ReferenceVideoConfig   SDVideoConfig + a ReferenceNet and (before, after) audio windows (EchoMimicV2, VividAnimator)
A teacher's config subclasses one of them, declares only its own keys, and overrides a default where its full-size
model differs (EchoMimicV2: 768x768 frames, audio output scale 3.0; VividAnimator: 24-frame windows, overlap 4).

Shared full-size defaults:
- the SD-1.x UNet layout of `sd-image-variations-diffusers/unet` (block_out_channels 320/640/1280/1280, 2 layers per
  block, 8 heads, GroupNorm 32, eps 1e-5), for the video denoiser (unet3d.py) and the ReferenceNet (reference.py);
- AnimateDiff "Vanilla" motion modules: 8 heads, 1 transformer block, temporal position encoding of length 32, in
  the mid block too (motion.py);
- the whisper-tiny encoder: 80 mels, 4 layers, 6 heads, width 384, 30 s windows = 1500 positions (audio.py);
- the sd-vae-ft-mse VAE layout (128/256/512/512, 2 layers per block, GroupNorm 32, latents scaled by 0.18215);
- DDIM over SD-1.x's 1000 training steps with betas 0.00085 .. 0.012, 30 sampling steps, windows of 12 frames
  overlapping by 3; 512x512 frames at 25 fps.
`tiny()` is a small random model for tests: 2 levels, 16/32 channels, 32x32 pixels, a 2-layer 16-wide whisper.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# a tuple key's element type: YAML gives lists, the configs hold tuples of numbers
_TUPLE_ELEMENTS = {"tuple[int, ...]": int, "tuple[float, ...]": float}

# the tiny model's shared settings (SDVideoConfig.tiny; each teacher adds its own keys)
TINY = dict(random_init=True, width=32, height=32, block_out_channels=(16, 32), layers_per_block=1,
            attention_heads=2, norm_num_groups=8, motion_heads=2, audio_dim=16, whisper_layers=2, whisper_heads=2,
            whisper_ffn=32, whisper_window_seconds=1, vae_block_out_channels=(8, 16), vae_layers_per_block=1,
            vae_norm_num_groups=8, num_inference_steps=2)


@dataclass
class SDVideoConfig:
    # weights: the teacher's weights folder; random_init=True builds random weights (tests)
    weights_dir: str = ""
    random_init: bool = False
    device: str = "cpu"
    dtype: str = "float32"               # "float32" | "float16" | "bfloat16"
    # video
    width: int = 512
    height: int = 512
    fps: int = 25
    # SD-1.x UNet layout (the video denoiser; the ReferenceNet where there is one)
    latent_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    attention_heads: int = 8             # diffusers' SD-1.x "attention_head_dim" (it is the head count)
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    # temporal motion modules
    motion_heads: int = 8
    motion_blocks: int = 1
    motion_max_len: int = 32
    motion_mid_block: bool = True
    # audio: whisper-tiny encoder; its tokens reach the denoiser through the audio cross-attention
    audio_dim: int = 384
    whisper_mels: int = 80
    whisper_layers: int = 4
    whisper_heads: int = 6
    whisper_ffn: int = 1536
    whisper_window_seconds: int = 30
    audio_feature_ratio: float = 1.0     # scale of the audio cross-attention output
    # VAE (sd-vae-ft-mse layout)
    vae_block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    vae_layers_per_block: int = 2
    vae_norm_num_groups: int = 32
    vae_scaling_factor: float = 0.18215
    # sampling: DDIM over temporal windows
    num_inference_steps: int = 30
    context_frames: int = 12
    context_overlap: int = 3
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012

    def __post_init__(self):
        for f in dataclasses.fields(self):
            element = _TUPLE_ELEMENTS.get(str(f.type))
            if element is not None:
                setattr(self, f.name, tuple(element(v) for v in getattr(self, f.name)))
        self._check()

    def _need(self, ok: bool, key: str, rule: str) -> None:
        """ValueError naming the config class and key unless ok."""
        if not ok:
            raise ValueError(f"{type(self).__name__}.{key}: {rule}, got {getattr(self, key)!r}")

    def _check(self) -> None:
        need = self._need
        need(len(self.block_out_channels) >= 2, "block_out_channels", "expected at least 2 levels")
        need(all(c % self.norm_num_groups == 0 for c in self.block_out_channels), "block_out_channels",
             f"every width must be divisible by norm_num_groups={self.norm_num_groups}")
        need(all(c % self.attention_heads == 0 and c % self.motion_heads == 0 for c in self.block_out_channels),
             "block_out_channels", "every width must be divisible by attention_heads and motion_heads")
        need(self.layers_per_block >= 1, "layers_per_block", "expected >= 1")
        need(self.dtype in ("float32", "float16", "bfloat16"), "dtype", "expected float32, float16 or bfloat16")
        total = self.vae_factor * 2 ** (len(self.block_out_channels) - 1)
        need(self.width % total == 0, "width", f"expected a multiple of {total}")
        need(self.height % total == 0, "height", f"expected a multiple of {total}")
        need(self.audio_dim % self.whisper_heads == 0, "audio_dim", "expected divisible by whisper_heads")
        need(self.context_frames > self.context_overlap >= 0, "context_overlap", "expected 0 <= overlap < frames")
        need(self.fps > 0 and 50 % self.fps == 0, "fps", "expected a divisor of 50 (whisper's 50 Hz encoder rate)")

    def _need_vae_factor(self, key: str, what: str) -> None:
        """A conditioning encoder's widths (key) must take pixels to the latent grid: one stride-2 conv per level."""
        self._need(2 ** (len(getattr(self, key)) - 1) == self.vae_factor, key,
                   f"the {what} encoder must downsample by the VAE factor {self.vae_factor} (one stride-2 conv per "
                   f"extra level)")

    # --- derived -------------------------------------------------------------------------------------------------
    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae_block_out_channels) - 1)

    @property
    def latent_hw(self) -> tuple[int, int]:
        """(h, w) of the latent grid of a height x width frame."""
        return self.height // self.vae_factor, self.width // self.vae_factor

    @property
    def time_embed_dim(self) -> int:
        return self.block_out_channels[0] * 4

    @property
    def down_block_types(self) -> tuple[str, ...]:
        """SD-1.x: cross-attention blocks at every level but the last (lowest) one."""
        return ("CrossAttnDownBlock2D",) * (len(self.block_out_channels) - 1) + ("DownBlock2D",)

    @property
    def up_block_types(self) -> tuple[str, ...]:
        return ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (len(self.block_out_channels) - 1)

    @property
    def audio_tokens_per_frame(self) -> int:
        """(before + 1 + after) video frames x (50 / fps) encoder steps x (layers + 1) hidden states; the subclass
        gives audio_context = (before, after) (a key of ReferenceVideoConfig; PAHAConfig derives it)."""
        before, after = self.audio_context
        return (before + 1 + after) * (50 // self.fps) * (self.whisper_layers + 1)

    def vae_kwargs(self) -> dict:
        """diffusers AutoencoderKL kwargs of the vae_* keys."""
        n = len(self.vae_block_out_channels)
        return dict(in_channels=3, out_channels=3, latent_channels=self.latent_channels,
                    block_out_channels=self.vae_block_out_channels, layers_per_block=self.vae_layers_per_block,
                    down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                    norm_num_groups=self.vae_norm_num_groups, act_fn="silu", scaling_factor=self.vae_scaling_factor)

    def scheduler_kwargs(self) -> dict:
        """diffusers DDIMScheduler kwargs: SD-1.x's training betas (scaled linear), epsilon prediction."""
        return dict(num_train_timesteps=self.num_train_timesteps, beta_start=self.beta_start, beta_end=self.beta_end,
                    beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                    prediction_type="epsilon", timestep_spacing="leading")

    # --- presets -------------------------------------------------------------------------------------------------
    @classmethod
    def full(cls, **overrides):
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides):
        """A small random model for tests (TINY, then the overrides)."""
        return cls(**{**TINY, **overrides})

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass
class ReferenceVideoConfig(SDVideoConfig):
    reference_cross_attention_dim: int = 768     # the ReferenceNet's (unused) image-embedding width
    audio_context: tuple[int, ...] = (2, 2)      # video frames of audio before / after the current one

    def _check(self) -> None:
        super()._check()
        self._need(len(self.audio_context) == 2 and min(self.audio_context) >= 0, "audio_context",
                   "expected (before, after) >= 0")

    def reference_unet_kwargs(self) -> dict:
        """diffusers UNet2DConditionModel kwargs of the SD-1.x layout (sd-image-variations-diffusers/unet)."""
        return dict(sample_size=self.height // self.vae_factor, in_channels=self.latent_channels,
                    out_channels=self.latent_channels, down_block_types=self.down_block_types,
                    up_block_types=self.up_block_types, block_out_channels=self.block_out_channels,
                    layers_per_block=self.layers_per_block, attention_head_dim=self.attention_heads,
                    norm_num_groups=self.norm_num_groups, norm_eps=self.norm_eps,
                    cross_attention_dim=self.reference_cross_attention_dim, flip_sin_to_cos=True, freq_shift=0,
                    act_fn="silu", downsample_padding=1, mid_block_scale_factor=1)

    @classmethod
    def tiny(cls, **overrides):
        return super().tiny(**{"reference_cross_attention_dim": 16, **overrides})
