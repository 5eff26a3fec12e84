"""EchoMimicV2Config: the shared SD-1.x video settings (sd_video/config.py) plus EchoMimicV2's own keys (strict YAML
keys through engine.config.from_dict).

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
  cfg 2.5 (infer.py), 6 steps and cfg 1.0 with the *_acc weights (infer_acc.py); context 12 frames, overlap 3;
  768x768 frames.
`EchoMimicV2Config.tiny()` is a small random model for tests (2 resolution levels, few channels).
"""
from __future__ import annotations

from dataclasses import dataclass

from distill.teachers.sd_video.config import ReferenceVideoConfig


@dataclass
class EchoMimicV2Config(ReferenceVideoConfig):
    # the released model's defaults where they differ from the shared ones
    width: int = 768
    height: int = 768
    audio_feature_ratio: float = 3.0
    # pose encoder
    pose_block_out_channels: tuple[int, ...] = (16, 32, 96, 256)
    pose_channels: int = 3
    # sampling: num_inference_steps and guidance_scale with the released weights (weights_dir in the layout of
    # checkpoint.py); accelerated: the *_acc weights (denoising_unet_acc.pth + motion_module_acc.pth) with
    # acc_inference_steps and acc_guidance_scale
    accelerated: bool = False
    guidance_scale: float = 2.5
    acc_inference_steps: int = 6
    acc_guidance_scale: float = 1.0

    def _check(self) -> None:
        super()._check()
        self._need_vae_factor("pose_block_out_channels", "pose")

    # --- derived -------------------------------------------------------------------------------------------------
    @property
    def steps(self) -> int:
        return self.acc_inference_steps if self.accelerated else self.num_inference_steps

    @property
    def cfg_scale(self) -> float:
        return self.acc_guidance_scale if self.accelerated else self.guidance_scale

    def scheduler_kwargs(self) -> dict:
        """diffusers DDIMScheduler kwargs (echomimic_v2 configs/inference/inference_v2.yaml)."""
        return dict(num_train_timesteps=self.num_train_timesteps, beta_start=self.beta_start, beta_end=self.beta_end,
                    beta_schedule="linear", clip_sample=False, steps_offset=1, prediction_type="v_prediction",
                    rescale_betas_zero_snr=True, timestep_spacing="trailing")

    # --- presets -------------------------------------------------------------------------------------------------
    @classmethod
    def tiny(cls, **overrides) -> "EchoMimicV2Config":
        """A small random model for tests: 2 levels, 16/32 channels, 32x32 pixels, a 2-layer 16-wide whisper."""
        return super().tiny(**{"pose_block_out_channels": (8, 16), "acc_inference_steps": 2, **overrides})
