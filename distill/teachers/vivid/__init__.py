"""VividAnimator (WACV 2026) as a distillation teacher, built on the shared SD-1.x video toolkit (distill/teachers/
sd_video/: EchoMimicV2's architecture) and diffusers components.

Files, one concept each:
    config.py            VividAnimatorConfig: full-size settings, and a tiny one for tests
    hcc.py               HCC, the Hand Clarity Codebook: a VQ-VAE over hand crops (pretrained offline, frozen)
    masked_attention.py  cross-attention limited to a region mask (DSAA head stream, HCC codebook attention)
    dsaa.py              DSAA head-aware stream: pooled audio windows -> audio adapter (the lip stream is the
                         shared audio cross-attention, sd_video/blocks.py)
    hands.py             hand keypoints -> heatmaps, boxes, masks, HCC crops; the light conv hand encoder
    pct.py               PCT, the training-free pose calibration of a driving skeleton to the reference
    unet.py              VividUNet3D: the shared denoiser plus the two masked attentions
    pipeline.py          components, their folder format, conditions, sampling with two-scale guidance
    training.py          the denoiser's diffusion loss with condition dropout
    teacher.py           the Teacher subclass, registered as "vivid_animator"
Importing this package registers the teacher; diffusers/transformers load only when one is built (or when a
module that needs them is imported).
"""
from .config import VividAnimatorConfig
from .teacher import VividAnimatorTeacher

__all__ = ["VividAnimatorConfig", "VividAnimatorTeacher"]
