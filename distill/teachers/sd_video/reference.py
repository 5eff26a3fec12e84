"""ReferenceNet and reference attention.

The ReferenceNet is diffusers' UNet2DConditionModel with the SD-1.x layout of sd-image-variations-diffusers/unet,
run once per video on the reference-image latent at timestep 0 with no encoder states. In the released model
(antgroup/echomimic_v2 src/models/unet_2d_condition.py + attention.py) its transformer blocks have no
cross-attention (attn2/norm2 are absent; the released BasicTransformerBlock only has attn1, norm1, ff, norm3) and
the head (conv_norm_out, conv_out) is removed: reference_unet.pth has none of those keys. `build_reference_unet`
makes the same cut on the diffusers model, so reference_unet.pth loads strictly.

Reference attention (src/models/mutual_self_attention.py, ReferenceAttentionControl, fusion_blocks="full"): in
"write" mode each ReferenceNet transformer block stores the input of its self-attention, norm1(x) [B, L, C]; in
"read" mode the denoiser block with the same rank concatenates those tokens to its own as extra keys/values of its
self-attention (blocks.py). The released code pairs the blocks by sorting both lists of blocks (module order) by
width; both networks share the SD-1.x layout, so that pairing is the identity on module paths
("down_blocks.0.attentions.0.transformer_blocks.0", ...). Here the pairing is done by path and checked.
Capture uses forward hooks on norm1, so the diffusers forward runs unmodified.
"""
from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from torch import Tensor, nn

from .blocks import SpatialTransformerBlock


def strip_for_reference(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """Remove what the released ReferenceNet does not have: cross-attention in the blocks, and the output head."""
    for block in unet.modules():
        if isinstance(block, BasicTransformerBlock):
            block.attn2 = None   # diffusers' forward skips the cross-attention when attn2 is None
            block.norm2 = None
    unet.conv_norm_out = None    # forward: `if self.conv_norm_out:` -> skipped
    unet.conv_act = None
    unet.conv_out = nn.Identity()
    return unet


def build_reference_unet(cfg, unet_kwargs: dict | None = None) -> UNet2DConditionModel:
    """A randomly initialised ReferenceNet (load weights with checkpoint.py). unet_kwargs: a config.json's content."""
    kwargs = cfg.reference_unet_kwargs() if unet_kwargs is None else unet_kwargs
    return strip_for_reference(UNet2DConditionModel.from_config(kwargs))


def reference_block_paths(unet: nn.Module) -> list[str]:
    return [name for name, m in unet.named_modules() if isinstance(m, BasicTransformerBlock)]


@torch.no_grad()
def reference_tokens(unet: UNet2DConditionModel, ref_latents: Tensor) -> dict[str, Tensor]:
    """Run the ReferenceNet on ref_latents [B, C, h, w] at t = 0 -> {block path: norm1 output [B, h_l*w_l, C_l]}."""
    return capture_reference_tokens(unet, ref_latents)


def capture_reference_tokens(unet: UNet2DConditionModel, ref_latents: Tensor) -> dict[str, Tensor]:
    """As reference_tokens, with autograd (training the ReferenceNet, as the released stage-1 training does)."""
    if ref_latents.dim() != 4 or ref_latents.shape[1] != unet.config.in_channels:
        raise ValueError(f"ref_latents: expected [B, {unet.config.in_channels}, h, w], got {list(ref_latents.shape)}")
    bank: dict[str, Tensor] = {}
    hooks = []
    for name, block in unet.named_modules():
        if isinstance(block, BasicTransformerBlock):
            def store(_module, _inputs, output, key=name):
                bank[key] = output
            hooks.append(block.norm1.register_forward_hook(store))
    try:
        t = torch.zeros(ref_latents.shape[0], device=ref_latents.device, dtype=torch.long)
        unet(ref_latents, t, encoder_hidden_states=None, return_dict=False)
    finally:
        for h in hooks:
            h.remove()
    return bank


def check_pairing(reference_unet: nn.Module, denoiser) -> None:
    """Every denoiser transformer block must have a ReferenceNet block at the same path with the same width."""
    ref = {n: m.norm1.normalized_shape[0] for n, m in reference_unet.named_modules()
           if isinstance(m, BasicTransformerBlock)}
    den = {m.path: m.norm1.normalized_shape[0] for m in denoiser.modules() if isinstance(m, SpatialTransformerBlock)}
    if ref != den:
        only_ref, only_den = sorted(set(ref) - set(den)), sorted(set(den) - set(ref))
        widths = sorted(k for k in set(ref) & set(den) if ref[k] != den[k])
        raise ValueError(f"ReferenceNet and denoiser blocks do not pair: only in ReferenceNet {only_ref}, only in "
                         f"denoiser {only_den}, width mismatch at {widths}")
