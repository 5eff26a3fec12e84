"""The denoising UNet over video latents [B, C, F, h, w] (EMOUNet3DConditionModel of the released code).

Structure (antgroup/echomimic_v2 src/models/unet_3d_emo.py, with configs/inference/inference_v2.yaml):
    conv_in -> (+ pose features) -> down blocks -> mid block -> up blocks (skips) -> GroupNorm, SiLU, conv_out
- time: Timesteps(C0, flip_sin_to_cos=True, shift 0) -> TimestepEmbedding(C0, 4*C0) (keys time_embedding.*).
- cross-attention at every level but the lowest (SD-1.x); its keys/values are the whisper tokens of each frame.
- motion modules at all resolutions and in the mid block (motion_module_resolutions 1/2/4/8, mid_block true).
- the PoseEncoder output is added right after conv_in (face_musk_fea in the released forward).
- ReferenceNet tokens enter every spatial transformer block's self-attention (reference.py; block paths pair the
  two networks, which have the same SD-1.x layout).
Parameter names equal the released ones, so denoising_unet.pth + motion_module.pth load without renaming
(tests/test_echomimic_v2.py checks this against tests/data/echomimic_v2_keys/).
"""
from __future__ import annotations

import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import Tensor, nn

from .blocks import Context, DownBlock, MidBlock, SpatialTransformerBlock, UpBlock


class DenoisingUNet3D(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        c = cfg.block_out_channels
        self.conv_in = nn.Conv2d(cfg.latent_channels, c[0], 3, padding=1)
        self.time_proj = Timesteps(c[0], flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(c[0], cfg.time_embed_dim)
        levels = len(c)
        self.down_blocks = nn.ModuleList([
            DownBlock(cfg, c[max(i - 1, 0)], c[i], cross_attention=i < levels - 1, downsample=i < levels - 1,
                      motion=True) for i in range(levels)])
        self.up_blocks = nn.ModuleList()
        rc = list(reversed(c))
        for i in range(levels):
            self.up_blocks.append(UpBlock(cfg, cin=rc[min(i + 1, levels - 1)], cout=rc[i], prev=rc[max(i - 1, 0)],
                                          cross_attention=i > 0, upsample=i < levels - 1, motion=True))
        self.mid_block = MidBlock(cfg, c[-1], motion=cfg.motion_mid_block)
        self.conv_norm_out = nn.GroupNorm(cfg.norm_num_groups, c[0], eps=cfg.norm_eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(c[0], cfg.latent_channels, 3, padding=1)
        for name, module in self.named_modules():
            if isinstance(module, SpatialTransformerBlock):
                module.path = name

    def transformer_block_paths(self) -> list[str]:
        return [m.path for m in self.modules() if isinstance(m, SpatialTransformerBlock)]

    def forward(self, sample: Tensor, timestep: Tensor | float | int, audio: Tensor | None = None,
                pose_features: Tensor | None = None, reference: dict[str, Tensor] | None = None,
                audio_mask: Tensor | None = None) -> Tensor:
        """Predict the model output (v for the released weights) for video latents.

        sample [B, C, F, h, w]; timestep scalar or [B]; audio [B, F, L, D_a] (None: zeros, the released "no audio");
        pose_features [B, C0, F, h, w] (PoseEncoder output) or None; reference {block path: [B, L, C]} or None
        (no reference attention); audio_mask [B, F, h, w] in [0, 1] or None (everywhere). -> [B, C, F, h, w].
        """
        # 1. inputs
        if sample.dim() != 5 or sample.shape[1] != self.cfg.latent_channels:
            raise ValueError(f"sample: expected [B, {self.cfg.latent_channels}, F, h, w], got {list(sample.shape)}")
        b, _, f, h, w = sample.shape
        down = 2 ** (len(self.cfg.block_out_channels) - 1)
        if h % down or w % down:
            raise ValueError(f"sample: h, w must be multiples of {down}, got {h}x{w}")
        if audio is None:
            audio = sample.new_zeros(b, f, 1, self.cfg.audio_dim)
        if audio.dim() != 4 or audio.shape[:2] != (b, f) or audio.shape[-1] != self.cfg.audio_dim:
            raise ValueError(f"audio: expected [{b}, {f}, L, {self.cfg.audio_dim}], got {list(audio.shape)}")
        if pose_features is not None and pose_features.shape != (b, self.cfg.block_out_channels[0], f, h, w):
            raise ValueError(f"pose_features: expected {[b, self.cfg.block_out_channels[0], f, h, w]}, "
                             f"got {list(pose_features.shape)}")
        if audio_mask is not None and audio_mask.shape != (b, f, h, w):
            raise ValueError(f"audio_mask: expected {[b, f, h, w]}, got {list(audio_mask.shape)}")

        # 2. time embedding, one row per frame
        t = torch.as_tensor(timestep, device=sample.device)
        if t.numel() not in (1, b):
            raise ValueError(f"timestep: expected a scalar or [{b}] values, got shape {list(t.shape)}")
        t = t.reshape(-1).expand(b)
        temb = self.time_embedding(self.time_proj(t).to(sample.dtype)).repeat_interleave(f, dim=0)

        # 3. fold frames into the batch; conv_in (+ pose)
        x = sample.permute(0, 2, 1, 3, 4).reshape(b * f, -1, h, w)
        x = self.conv_in(x)
        if pose_features is not None:
            x = x + pose_features.permute(0, 2, 1, 3, 4).reshape(b * f, -1, h, w).to(x.dtype)
        mask = None if audio_mask is None else audio_mask.reshape(b * f, 1, h, w)
        ctx = Context(temb, f, audio.reshape(b * f, *audio.shape[2:]), reference, mask, self.cfg.audio_feature_ratio)

        # 4. down, mid, up
        skips = [x]
        for block in self.down_blocks:
            x, s = block(x, ctx)
            skips.extend(s)
        x = self.mid_block(x, ctx)
        for block in self.up_blocks:
            block_skips = [skips.pop() for _ in block.resnets][::-1]
            size = skips[-1].shape[-2:] if skips else None
            x = block(x, block_skips, ctx, size)

        # 5. out, unfold frames
        x = self.conv_out(self.conv_act(self.conv_norm_out(x)))
        return x.reshape(b, f, -1, h, w).permute(0, 2, 1, 3, 4)
