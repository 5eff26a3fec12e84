"""EchoMimicV2 (arXiv 2411.10061; code antgroup/echomimic_v2) as a distillation teacher, built on diffusers components.

The network parts (video denoiser, motion modules, ReferenceNet, PoseEncoder, whisper features, VAE handling,
windowed sampling) are the shared SD-1.x video toolkit in distill/teachers/sd_video/; EchoMimicV2's own files:
    config.py      EchoMimicV2Config: full-size settings of the released model, and a tiny one for tests
    checkpoint.py  the released file layout, loading, whisper key renaming
    pipeline.py    components and sampling (DDIM, context windows, classifier-free guidance)
    training.py    APDH, HPA and PhD losses
    teacher.py     the Teacher subclass, registered as "echomimic_v2"
Importing this package registers the teacher; diffusers/transformers load only when one is built.
"""
from .config import EchoMimicV2Config
from .teacher import EchoMimicV2Teacher

__all__ = ["EchoMimicV2Config", "EchoMimicV2Teacher"]
