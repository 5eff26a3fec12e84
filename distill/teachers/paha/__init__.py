"""PAHA (Parts-Aware Audio-Driven Human Animation, ACM MM'25, arXiv 2505.03603) as a distillation teacher.

Files, one concept each:
    config.py      PAHAConfig: full-size settings and a tiny one for tests
    univdm.py      UniVDM: one 3D UNet over [reference latent, video latents] stacked in time
    par.py         PAR: pose-confidence loss weights (discs for hands/face, a rectangle for the body)
    pce.py         PCE: regional (face / non-face) audio-visual classifiers on the diffusion encoder
    guidance.py    Sequential and Differential Guidance update equations
    checkpoint.py  save_pretrained / loading (config.json + model.safetensors)
    pipeline.py    components and DDIM sampling with SG / DG
    training.py    the UniVDM + PAR loss and the PCE BCE
    teacher.py     the Teacher subclass, registered as "paha"
Importing this package registers the teacher; diffusers/transformers load only when one is built.
"""
from .config import PAHAConfig
from .teacher import PAHATeacher

__all__ = ["PAHAConfig", "PAHATeacher"]
