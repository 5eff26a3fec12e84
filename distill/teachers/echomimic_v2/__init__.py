"""EchoMimicV2 (arXiv 2411.10061; code antgroup/echomimic_v2) as a distillation teacher, built on diffusers components.

Files, one concept each:
    config.py      EchoMimicV2Config: full-size settings of the released model, and a tiny one for tests
    motion.py      temporal motion module (self-attention over frames)
    blocks.py      spatial blocks: reference attention + audio cross-attention; down/mid/up blocks
    unet3d.py      the denoising UNet over video latents [B, C, F, h, w]
    reference.py   ReferenceNet (diffusers UNet2DConditionModel) and the capture of its attention tokens
    pose.py        PoseEncoder
    audio.py       whisper-tiny features -> per-frame audio windows
    checkpoint.py  the released file layout, loading, whisper key renaming
    pipeline.py    components and sampling (DDIM, context windows, classifier-free guidance)
    training.py    APDH, HPA and PhD losses
    teacher.py     the Teacher subclass, registered as "echomimic_v2"
Importing this package registers the teacher; diffusers/transformers load only when one is built.
"""
from .config import EchoMimicV2Config
from .teacher import EchoMimicV2Teacher

__all__ = ["EchoMimicV2Config", "EchoMimicV2Teacher"]
