"""Configs, cameras, video writing and the CLI: the pieces the main job is made of."""
from dataclasses import dataclass

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from audioavatar import cli
from engine.render.camera import intrinsics, look_at, orbit
from engine.config import from_dict, load_config
from engine.render.turntable import RenderConfig
from engine.render.video import Mp4Writer


@dataclass
class Tiny:
    size: int
    rate: float = 1.0
    name: str = "x"


def test_config_rejects_unknown_and_mistyped_keys(tmp_path):
    assert from_dict(Tiny, {"size": 3, "rate": 2}) == Tiny(3, 2.0)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['colour'\].*valid keys: \['name', 'rate', 'size'\]"):
        from_dict(Tiny, {"size": 3, "colour": 1})
    with pytest.raises(ValueError, match=r"key 'size' expects int, got '3'"):
        from_dict(Tiny, {"size": "3"})
    with pytest.raises(ValueError, match=r"missing 1 required positional argument: 'size'"):
        from_dict(Tiny, {})
    (tmp_path / "bad.yaml").write_text("size: [1,\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(Tiny, tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="config file not found"):
        load_config(Tiny, tmp_path / "missing.yaml")


def test_bundled_render_config_matches_the_dataclass_defaults():
    assert load_config(RenderConfig, cli.REPO / "configs" / "render.yaml") == RenderConfig()


def test_look_at_puts_the_target_at_the_image_centre():
    K = intrinsics(200, 100, fov_y_deg=40)
    target = torch.tensor([0.3, -0.2, 1.0])
    V = orbit(target, radius=2.0, angle_deg=30)
    def project(p):
        c = V[:3, :3] @ p + V[:3, 3]
        return (K @ c)[:2] / c[2], c[2]
    uv, z = project(target)
    assert torch.allclose(uv, torch.tensor([100.0, 50.0]), atol=1e-4) and abs(float(z) - 2.0) < 1e-5
    above, _ = project(target + torch.tensor([0.0, -0.1, 0.0]))          # world up is -y
    assert float(above[1]) < 50.0 and abs(float(above[0]) - 100.0) < 1e-3
    # focal length from the field of view: tan(20 deg) * f = 50 px
    assert abs(float(K[1, 1]) * np.tan(np.radians(20)) - 50.0) < 1e-3
    with pytest.raises(ValueError, match="coincide"):
        look_at(target, target)


def test_mp4_writer_round_trip_and_atomicity(tmp_path):
    frames = [np.full((32, 48, 3), v, np.uint8) for v in (0, 60, 120, 180, 240)]
    path = tmp_path / "clip.mp4"
    with Mp4Writer(path, 48, 32, fps=25) as w:
        for f in frames:
            w.write(f)
    back = [f for f in imageio.get_reader(path)]
    assert len(back) == 5
    assert all(abs(float(b.mean()) - float(f.mean())) < 6 for b, f in zip(back, frames))
    with pytest.raises(RuntimeError, match="boom"):
        with Mp4Writer(tmp_path / "broken.mp4", 48, 32) as w:
            w.write(frames[0])
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]   # nothing half-written
    with pytest.raises(ValueError, match="even frame sizes"):
        Mp4Writer(tmp_path / "odd.mp4", 47, 32)


def test_demo_writes_a_still_and_a_turntable(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "-o", str(out), "--frames", "3", "--size", "96"]) == 0
    still = imageio.imread(out / "front.png")
    assert still.shape == (96, 96, 3) and still.std() > 10                # an image, not a flat colour
    assert len([f for f in imageio.get_reader(out / "turntable.mp4")]) == 3
    assert "turntable.mp4" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["render", "nope.ply"], "nope.ply: no such file"),
    (["demo", "--size", "7"], "--size: need an even size of at least 16"),
    (["demo", "--frames", "0"], "--frames: need at least 1 frame"),
])
def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert cli.main(argv + ["-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_render_rejects_a_file_that_is_not_a_ply(tmp_path, capsys):
    bad = tmp_path / "scene.ply"
    bad.write_text("hello")
    assert cli.main(["render", str(bad), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "scene.ply" in err and "magic" in err.lower() and len(err.strip().splitlines()) == 1
