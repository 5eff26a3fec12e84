"""Helpers of the SD-1.x video teachers' tests (test_echomimic_v2.py, test_vivid_animator.py, test_paha.py): tiny
random components and training tensors built the same way every run, the teachers' YAML configs compared as plain
values, and the config checks every such teacher passes."""
import dataclasses
from pathlib import Path

import pytest
import torch

TEACHER_YAMLS = Path(__file__).resolve().parent.parent / "configs" / "teachers"


def tiny_components(pipeline, config_class, **overrides):
    """pipeline.build_components(config_class.tiny(**overrides)), random weights from torch seed 0."""
    torch.manual_seed(0)
    return pipeline.build_components(config_class.tiny(**overrides))


def as_lists(config) -> dict:
    """A config's keys and values, tuples as lists (the form a YAML file gives)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def random_clip(cfg, b: int, f: int, seed: int) -> tuple[torch.Generator, dict]:
    """Random training tensors for a tiny config, drawn from `seed`: (the generator, for the caller's further draws,
    {"latents" [B, C, F, h, w], "ref_latents" [B, C, h, w], "audio" [B, F, L, D_a]})."""
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.latent_hw
    c = cfg.latent_channels
    return g, {"latents": torch.randn(b, c, f, h, w, generator=g), "ref_latents": torch.randn(b, c, h, w, generator=g),
               "audio": torch.randn(b, f, cfg.audio_tokens_per_frame, cfg.audio_dim, generator=g)}


def check_strict_config(teacher_class, pipeline, config_class) -> None:
    """What every SD-video teacher's config does: an unknown key is a ValueError naming it; neither weights_dir nor
    random_init is a ValueError naming weights_dir."""
    with pytest.raises(ValueError, match=r"unknown key.*'nonsense'"):
        teacher_class(random_init=True, nonsense=1)
    with pytest.raises(ValueError, match="weights_dir"):
        pipeline.build_components(config_class.tiny(random_init=False))
