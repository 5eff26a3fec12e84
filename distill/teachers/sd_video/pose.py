"""PoseEncoder: pose images (drawn hand keypoints) -> a feature map added to the denoiser's first feature map.
EchoMimicV2's pose condition; VividAnimator's light conv hand encoder is the same network on 2 heatmap channels.

Built as the released one, `PoseEncoder(320, conditioning_channels=3, block_out_channels=(16, 32, 96, 256))`
(antgroup/echomimic_v2 infer.py; layer layout from src/models/pose_encoder.py):
    conv_in: 3x3 conv, 3 -> 16;  SiLU
    blocks:  for each consecutive pair (a, b): 3x3 conv a -> a; SiLU; 3x3 stride-2 conv a -> b; SiLU
             (16->16, 16->32 /2, 32->32, 32->96 /2, 96->96, 96->256 /2: blocks.0 ... blocks.5)
    conv_out: 3x3 conv, 256 -> 320, zero-initialised (no SiLU after it)
Three stride-2 convs take the pixel-resolution pose image to the latent resolution (/8, the VAE factor). The convs
are per frame ("InflatedConv3d" in the released code), so the keys are plain Conv2d ones.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class PoseEncoder(nn.Module):
    def __init__(self, conditioning_embedding_channels: int, conditioning_channels: int = 3,
                 block_out_channels: tuple[int, ...] = (16, 32, 96, 256)):
        super().__init__()
        c = block_out_channels
        self.conv_in = nn.Conv2d(conditioning_channels, c[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        for a, b in zip(c[:-1], c[1:]):
            self.blocks.append(nn.Conv2d(a, a, 3, padding=1))
            self.blocks.append(nn.Conv2d(a, b, 3, padding=1, stride=2))
        self.conv_out = nn.Conv2d(c[-1], conditioning_embedding_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.in_channels = conditioning_channels
        self.factor = 2 ** (len(c) - 1)

    def forward(self, pose: Tensor) -> Tensor:
        """pose [B, 3, F, H, W] in [0, 1] -> [B, C_out, F, H / factor, W / factor]."""
        if pose.dim() != 5 or pose.shape[1] != self.in_channels:
            raise ValueError(f"pose: expected [B, {self.in_channels}, F, H, W], got {list(pose.shape)}")
        b, c, f, h, w = pose.shape
        if h % self.factor or w % self.factor:
            raise ValueError(f"pose: H, W must be multiples of {self.factor}, got {h}x{w}")
        x = pose.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        x = F.silu(self.conv_in(x))
        for conv in self.blocks:
            x = F.silu(conv(x))
        x = self.conv_out(x)
        return x.reshape(b, f, *x.shape[1:]).permute(0, 2, 1, 3, 4)

