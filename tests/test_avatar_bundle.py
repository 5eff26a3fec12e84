"""The avatar bundle: exact save/load round trip, atomic writes that never damage an existing bundle, and
clear errors for broken bundles."""
import json

import pytest
import torch

import engine.avatar.bundle as avatar_mod
from engine.avatar.bundle import REGIONS, Avatar, PhotoCamera
from engine.render.camera import intrinsics, orbit
from bench.demo_scene import avatar_like_scene
from engine.render.gaussians import Gaussians
from engine.render.turntable import RenderConfig, render_view


def tiny_avatar(n=300, k=12, j=3, seed=0) -> Avatar:
    s = avatar_like_scene(n, seed)
    g = Gaussians(s.means, s.quats, s.scales, s.opacities, s.sh[:, :4].contiguous())
    gen = torch.Generator().manual_seed(seed)
    particles = s.means[torch.randperm(n, generator=gen)[:k]].clone()
    d, idx = torch.cdist(s.means, particles).topk(j, largest=False)
    w = torch.softmax(-d, -1)
    return Avatar(g, torch.randint(0, len(REGIONS), (n,), generator=gen), particles,
                  torch.randint(0, len(REGIONS), (k,), generator=gen), [f"pose:{i}" for i in range(k)], idx, w,
                  PhotoCamera(intrinsics(64, 64), orbit(torch.zeros(3), 2.0, 0.0), 64, 64), {"source": "test"})


def test_round_trip_is_exact_and_renders_identically(tmp_path):
    a = tiny_avatar()
    n = len(a.gaussians)
    a.away_dc = torch.randn(n, 3)                                              # engine.render.away
    b = Avatar.from_pretrained(a.save_pretrained(tmp_path / "me"))
    for name in ("regions", "particles", "particle_regions", "skin_index", "skin_weight", "away_dc"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    for name in ("means", "quats", "sh"):
        assert torch.equal(getattr(a.gaussians, name), getattr(b.gaussians, name)), name
    # scales and opacities pass through log / logit on disk: equal to float rounding
    assert torch.allclose(a.gaussians.scales, b.gaussians.scales, rtol=1e-6)
    assert torch.allclose(a.gaussians.opacities, b.gaussians.opacities, rtol=1e-5, atol=1e-6)
    assert b.particle_names == a.particle_names and b.meta == {"source": "test"}
    assert torch.equal(a.camera.K, b.camera.K) and torch.equal(a.camera.viewmat, b.camera.viewmat)
    cfg = RenderConfig(width=64, height=64)
    vm = orbit(a.particles.mean(0), 2.5, 20.0)
    ia, _ = render_view(a.gaussians, vm, cfg)
    ib, _ = render_view(b.gaussians, vm, cfg)
    assert float((ia - ib).abs().max()) < 1e-5


def test_failed_write_leaves_the_existing_bundle_intact(tmp_path, monkeypatch):
    first = tiny_avatar(seed=1)
    first.save_pretrained(tmp_path / "me")
    before = {p.name: p.read_bytes() for p in (tmp_path / "me").iterdir()}
    def boom(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(avatar_mod, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        tiny_avatar(seed=2).save_pretrained(tmp_path / "me")
    assert {p.name: p.read_bytes() for p in (tmp_path / "me").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["me"]                # no temporary folders left


def test_overwrite_replaces_the_bundle(tmp_path):
    tiny_avatar(seed=1).save_pretrained(tmp_path / "me")
    second = tiny_avatar(seed=2)
    second.save_pretrained(tmp_path / "me")
    assert torch.equal(Avatar.from_pretrained(tmp_path / "me").particles, second.particles)
    assert [p.name for p in tmp_path.iterdir()] == ["me"]


def test_broken_bundles_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"not an avatar bundle, missing \['gaussians.ply', 'avatar.json'"):
        Avatar.from_pretrained(tmp_path)
    d = tiny_avatar().save_pretrained(tmp_path / "me")
    cfg = json.loads((d / "avatar.json").read_text())
    (d / "avatar.json").write_text(json.dumps({**cfg, "format_version": 99}))
    with pytest.raises(ValueError, match="format_version 99"):
        Avatar.from_pretrained(d)
    (d / "avatar.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        Avatar.from_pretrained(d)
    (d / "avatar.json").write_text(json.dumps(cfg))
    (d / "avatar.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="avatar.safetensors: unreadable"):
        Avatar.from_pretrained(d)


def test_validate_names_the_inconsistent_part():
    a = tiny_avatar()
    a.skin_weight = a.skin_weight * 2
    with pytest.raises(ValueError, match="skin_weight: every row must sum to 1"):
        a.validate()
    a = tiny_avatar()
    a.regions = a.regions[:-1]
    with pytest.raises(ValueError, match=r"regions: expected shape \[300\]"):
        a.validate()
    a = tiny_avatar()
    a.away_dc = torch.zeros(299, 3)
    with pytest.raises(ValueError, match=r"away_dc: expected shape \[300, 3\]"):
        a.validate()


def test_a_tall_photo_is_fitted_into_a_square_frame_unstretched():
    K = intrinsics(240, 500, 20.0)                                          # a tall portrait, 240 x 500
    cam = PhotoCamera(K, torch.eye(4), 240, 500)
    K2 = cam.scaled_K(512, 512)
    assert float(K2[0, 0]) == pytest.approx(float(K2[1, 1]))               # one scale: nothing stretched
    assert float(K2[1, 1]) == pytest.approx(float(K[1, 1]) * 512 / 500)
    point = torch.tensor([0.1, -0.3, 2.5])                                  # any point: the same place in the photo
    uv, uv2 = (K @ point / point[2])[:2], (K2 @ point / point[2])[:2]
    s, margin = 512 / 500, (512 - 240 * 512 / 500) / 2
    assert torch.allclose(uv2, torch.stack([uv[0] * s + margin, uv[1] * s]), atol=1e-3)
    assert torch.allclose(cam.scaled_K(240, 500), K)                        # its own size: unchanged
