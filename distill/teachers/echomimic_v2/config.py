"""EchoMimicV2 settings: one flat dataclass (strict YAML keys through engine.config.from_dict).

The full-size numbers are those of the released model (antgroup/echomimic_v2):
- SD-1.x UNet layout of `sd-image-variations-diffusers/unet` (block_out_channels 320/640/1280/1280, 2 layers per
  block, 8 heads, GroupNorm 32, eps 1e-5, image-embedding width 768); the denoiser swaps its cross-attention width
  for whisper-tiny's 384 (configs/inference/inference_v2.yaml: cross_attention_dim 384).
- motion module: "Vanilla", 8 heads, 1 transformer block of two Temporal_Self attentions, sinusoidal temporal
  position encoding of max length 32, at resolutions 1/2/4/8 and in the mid block (inference_v2.yaml).
- PoseEncoder(320, conditioning_channels=3, block_out_channels=(16, 32, 96, 256)) (infer.py).
- audio: whisper-tiny encoder (80 mels, 4 layers, 6 heads, d_model 384, 30 s windows = 1500 positions); per video
  frame a window of 2 + 1 + 2 encoder steps-pairs, i.e. 10 encoder frames x 5 hidden states = 50 tokens
  (src/models/whisper/audio2feature.py get_sliced_feature, audio_feat_length=[2, 2]).
- audio cross-attention output scaled by 3.0 (src/models/mutual_self_attention.py, audio_feature_ratio).
- DDIM, v-prediction, zero-SNR betas, trailing spacing (inference_v2.yaml noise_scheduler_kwargs); 30 steps and
  cfg 2.5 (infer.py), 6 steps and cfg 1.0 with the *_acc weights (infer_acc.py); context 12 frames, overlap 3.
`EchoMimicV2Config.tiny()` is a small random model for tests (2 resolution levels, few channels).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


def check_unet_layout(cfg, need) -> None:
    """The rules every SD-1.x-style video U-Net config here shares (EchoMimicV2, VividAnimator, PAHA): `need(ok,
    key, rule)` raises the config's ValueError naming the key."""
    need(len(cfg.block_out_channels) >= 2, "block_out_channels", "expected at least 2 levels")
    need(all(c % cfg.norm_num_groups == 0 for c in cfg.block_out_channels), "block_out_channels",
         f"every width must be divisible by norm_num_groups={cfg.norm_num_groups}")
    need(all(c % cfg.attention_heads == 0 and c % cfg.motion_heads == 0 for c in cfg.block_out_channels),
         "block_out_channels", "every width must be divisible by attention_heads and motion_heads")
    need(cfg.layers_per_block >= 1, "layers_per_block", "expected >= 1")
    need(cfg.dtype in ("float32", "float16", "bfloat16"), "dtype", "expected float32, float16 or bfloat16")


@dataclass
class EchoMimicV2Config:
    # weights: a folder in the released layout (checkpoint.py); random_init=True builds random weights (tests)
    weights_dir: str = ""
    random_init: bool = False
    accelerated: bool = False            # denoising_unet_acc.pth + motion_module_acc.pth, 6 steps, cfg 1.0
    device: str = "cpu"
    dtype: str = "float32"               # "float32" | "float16" | "bfloat16"
    # video
    width: int = 768
    height: int = 768
    fps: int = 25
    # SD-1.x UNet layout (denoiser and ReferenceNet)
    latent_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    attention_heads: int = 8             # diffusers' SD-1.x "attention_head_dim" (it is the head count)
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    reference_cross_attention_dim: int = 768   # the ReferenceNet's (unused) image-embedding width
    # motion module
    motion_heads: int = 8
    motion_blocks: int = 1
    motion_max_len: int = 32
    motion_mid_block: bool = True
    # pose encoder
    pose_channels: int = 3
    pose_block_out_channels: tuple[int, ...] = (16, 32, 96, 256)
    # audio (whisper-tiny encoder)
    audio_dim: int = 384
    whisper_mels: int = 80
    whisper_layers: int = 4
    whisper_heads: int = 6
    whisper_ffn: int = 1536
    whisper_window_seconds: int = 30
    audio_context: tuple[int, ...] = (2, 2)        # video frames of audio before / after the current one
    audio_feature_ratio: float = 3.0
    # VAE (sd-vae-ft-mse layout)
    vae_block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    vae_layers_per_block: int = 2
    vae_norm_num_groups: int = 32
    vae_scaling_factor: float = 0.18215
    # sampling
    num_inference_steps: int = 30
    guidance_scale: float = 2.5
    acc_inference_steps: int = 6
    acc_guidance_scale: float = 1.0
    context_frames: int = 12
    context_overlap: int = 3
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012

    def __post_init__(self):
        for name in ("block_out_channels", "pose_block_out_channels", "audio_context", "vae_block_out_channels"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        self._check()

    def _check(self):
        def need(ok, key, rule):
            if not ok:
                raise ValueError(f"EchoMimicV2Config.{key}: {rule}, got {getattr(self, key)!r}")
        check_unet_layout(self, need)
        down = 2 ** (len(self.vae_block_out_channels) - 1)
        need(2 ** (len(self.pose_block_out_channels) - 1) == down, "pose_block_out_channels",
             f"the pose encoder must downsample by the VAE factor {down} (one stride-2 conv per extra level)")
        unet_down = 2 ** (len(self.block_out_channels) - 1)
        need(self.width % (down * unet_down) == 0, "width", f"expected a multiple of {down * unet_down}")
        need(self.height % (down * unet_down) == 0, "height", f"expected a multiple of {down * unet_down}")
        need(self.audio_dim % self.whisper_heads == 0, "audio_dim", "expected divisible by whisper_heads")
        need(self.context_frames > self.context_overlap >= 0, "context_overlap", "expected 0 <= overlap < frames")
        need(self.fps > 0 and 50 % self.fps == 0, "fps", "expected a divisor of 50 (whisper's 50 Hz encoder rate)")
        need(len(self.audio_context) == 2 and min(self.audio_context) >= 0, "audio_context",
             "expected (before, after) >= 0")

    # --- derived -------------------------------------------------------------------------------------------------
    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae_block_out_channels) - 1)

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
        """(before + 1 + after) video frames x (50 / fps) encoder frames x (layers + 1) hidden states (50 full)."""
        before, after = self.audio_context
        return (before + 1 + after) * (50 // self.fps) * (self.whisper_layers + 1)

    @property
    def steps(self) -> int:
        return self.acc_inference_steps if self.accelerated else self.num_inference_steps

    @property
    def cfg_scale(self) -> float:
        return self.acc_guidance_scale if self.accelerated else self.guidance_scale

    def reference_unet_kwargs(self) -> dict:
        """diffusers UNet2DConditionModel kwargs of the SD-1.x layout (sd-image-variations-diffusers/unet)."""
        return dict(sample_size=self.height // self.vae_factor, in_channels=self.latent_channels,
                    out_channels=self.latent_channels, down_block_types=self.down_block_types,
                    up_block_types=self.up_block_types, block_out_channels=self.block_out_channels,
                    layers_per_block=self.layers_per_block, attention_head_dim=self.attention_heads,
                    norm_num_groups=self.norm_num_groups, norm_eps=self.norm_eps,
                    cross_attention_dim=self.reference_cross_attention_dim, flip_sin_to_cos=True, freq_shift=0,
                    act_fn="silu", downsample_padding=1, mid_block_scale_factor=1)

    def scheduler_kwargs(self) -> dict:
        """diffusers DDIMScheduler kwargs (echomimic_v2 configs/inference/inference_v2.yaml)."""
        return dict(num_train_timesteps=self.num_train_timesteps, beta_start=self.beta_start, beta_end=self.beta_end,
                    beta_schedule="linear", clip_sample=False, steps_offset=1, prediction_type="v_prediction",
                    rescale_betas_zero_snr=True, timestep_spacing="trailing")

    def vae_kwargs(self) -> dict:
        n = len(self.vae_block_out_channels)
        return dict(in_channels=3, out_channels=3, latent_channels=self.latent_channels,
                    block_out_channels=self.vae_block_out_channels, layers_per_block=self.vae_layers_per_block,
                    down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                    norm_num_groups=self.vae_norm_num_groups, act_fn="silu", scaling_factor=self.vae_scaling_factor)

    # --- presets -------------------------------------------------------------------------------------------------
    @classmethod
    def full(cls, **overrides) -> "EchoMimicV2Config":
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides) -> "EchoMimicV2Config":
        """A small random model for tests: 2 levels, 16/32 channels, 32x32 pixels, a 2-layer 16-wide whisper."""
        base = dict(random_init=True, width=32, height=32, block_out_channels=(16, 32), layers_per_block=1,
                    attention_heads=2, norm_num_groups=8, reference_cross_attention_dim=16, motion_heads=2,
                    motion_max_len=32, pose_block_out_channels=(8, 16), audio_dim=16, whisper_layers=2,
                    whisper_heads=2, whisper_ffn=32, whisper_window_seconds=1, vae_block_out_channels=(8, 16),
                    vae_layers_per_block=1, vae_norm_num_groups=8, num_inference_steps=2, acc_inference_steps=2)
        base.update(overrides)
        return cls(**base)

    def replace(self, **changes) -> "EchoMimicV2Config":
        return dataclasses.replace(self, **changes)
