"""Every configs/*.yaml loads into its dataclass with strict keys and equals the code's defaults, so the
files document what the code does; an unknown key names the valid ones."""
from pathlib import Path

import pytest

from engine.audio.features import MelConfig
from engine.audio.encoder import AudioEncoderConfig
from engine.config import load_config
from distill.embedding import EmbeddingConfig
from engine.evaluation.config import EvalConfig
from engine.motion.dit import MotionDiTConfig
from engine.motion.procedural import ProceduralConfig
from engine.motion.refiner import RefinerConfig
from engine.render.turntable import RenderConfig
from engine.runtime import EngineConfig
from engine.avatar.shell import ShellConfig
from distill.tracks import TrackConfig

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
PAIRS = {"mel": MelConfig, "audio_encoder": AudioEncoderConfig, "motion": MotionDiTConfig, "refiner": RefinerConfig,
         "embedding": EmbeddingConfig, "procedural": ProceduralConfig, "shell": ShellConfig, "engine": EngineConfig,
         "render": RenderConfig, "tracks": TrackConfig, "eval": EvalConfig}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_yaml_equals_the_defaults(name):
    assert load_config(PAIRS[name], CONFIGS / f"{name}.yaml") == PAIRS[name]()


def test_nested_yamls_equal_their_defaults():
    from distill.versa import VersaTrainConfig, load_train_config
    assert load_train_config(CONFIGS / "versa.yaml") == VersaTrainConfig()


def test_every_yaml_is_covered():
    assert {p.stem for p in CONFIGS.glob("*.yaml")} == set(PAIRS) | {"versa"}


def test_teacher_yamls_equal_their_defaults():
    import dataclasses

    from distill.teachers.echomimic_v2.config import EchoMimicV2Config
    from distill.teachers.procedural import ProceduralTeacherConfig
    from distill.teachers.versa import VersaAnimatorConfig
    as_lists = lambda c: {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(c).items()}  # noqa: E731
    for name, cls in (("procedural", ProceduralTeacherConfig), ("echomimic_v2", EchoMimicV2Config),
                      ("versa_animator", VersaAnimatorConfig)):
        assert as_lists(load_config(cls, CONFIGS / "teachers" / f"{name}.yaml")) == as_lists(cls()), name


def test_unknown_key_lists_the_valid_ones(tmp_path):
    bad = tmp_path / "m.yaml"
    bad.write_text((CONFIGS / "motion.yaml").read_text() + "dimm: 3\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['dimm'\].*valid keys"):
        load_config(MotionDiTConfig, bad)


def test_distill_yamls_load_and_the_default_equals_the_code():
    from distill.config import DistillConfig, load_distill_config
    assert load_distill_config(CONFIGS / "distill" / "default.yaml") == DistillConfig()
    tiny = load_distill_config(CONFIGS / "distill" / "tiny.yaml", ["finetune.w_traj=0"])
    assert tiny.finetune.w_traj == 0 and tiny.motion_model.dim == 32


def test_an_exponent_without_a_dot_is_a_float(tmp_path):
    """PyYAML reads 1e-5 as a string (YAML 1.1); where a float is expected it is the number, elsewhere an error."""
    from distill.config import load_distill_config
    cfg = load_distill_config(CONFIGS / "distill" / "tiny.yaml", ["finetune.lr=1e-5", "embedding.lr=3E-2"])
    assert cfg.finetune.lr == 1e-5 and cfg.embedding.lr == 0.03
    with pytest.raises(ValueError, match=r"'lr' expects float, got 'fast'"):
        load_distill_config(CONFIGS / "distill" / "tiny.yaml", ["finetune.lr=fast"])
    with pytest.raises(ValueError, match=r"'steps' expects int, got '1e3'"):
        load_distill_config(CONFIGS / "distill" / "tiny.yaml", ["finetune.steps=1e3"])


def test_distill_config_errors_name_the_key(tmp_path):
    from distill.config import load_distill_config
    bad = tmp_path / "d.yaml"
    bad.write_text("finetune:\n  w_trajj: 1.0\n")
    with pytest.raises(ValueError, match=r"w_trajj.*valid keys"):
        load_distill_config(bad)
    bad.write_text("finetun:\n  w_traj: 1.0\n")
    with pytest.raises(ValueError, match=r"unknown section.*finetun"):
        load_distill_config(bad)
    with pytest.raises(ValueError, match="audio feature size must agree"):
        load_distill_config(CONFIGS / "distill" / "tiny.yaml", ["audio_encoder.dim=64"])
    with pytest.raises(ValueError, match=r"fit4d.gain_lr must be > 0"):
        load_distill_config(CONFIGS / "distill" / "tiny.yaml", ["fit4d.gain_lr=0"])
    with pytest.raises(ValueError, match=r"gain_low/gain_high"):
        load_distill_config(CONFIGS / "distill" / "tiny.yaml", ["fit4d.gain_low=1.5"])
    with pytest.raises(ValueError, match="--set"):
        load_distill_config(CONFIGS / "distill" / "tiny.yaml", ["finetune"])
