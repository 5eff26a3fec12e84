"""engine.motion.refiner: the refined slots are exactly face/lips/eyes/hands, an untrained refiner is the identity,
other slots pass through untouched, save/load round trip, the time index matters, and it learns a residual."""
import pytest
import torch

from engine.motion.dit import MotionDiT
from engine.avatar.particles import canonical_slots
from engine.motion.refiner import FaceHandRefiner, RefinerConfig, refined_slots
from engine.avatar.regions import BODY, EYES, FACE, HANDS, LIPS

KC, D = len(canonical_slots()), 8


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def tiny(**kw) -> RefinerConfig:
    return RefinerConfig(**{**dict(audio_dim=D, dim=32, depth=1, heads=2), **kw})


def perturbed(seed: int = 0) -> FaceHandRefiner:
    torch.manual_seed(seed)
    model = FaceHandRefiner(tiny())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def inputs(B=2, T=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, KC, 3, generator=g), torch.randn(B, T, D, generator=g),
            torch.arange(T).repeat(B, 1) + 5)


def test_refined_slots_are_face_lips_eyes_hands():
    slots = refined_slots()
    regions = torch.tensor([r for _, r in canonical_slots()])
    assert set(regions[slots].tolist()) == {FACE, LIPS, EYES, HANDS}
    others = torch.ones(KC, dtype=torch.bool)
    others[slots] = False
    assert set(regions[others].tolist()) == {BODY}
    assert torch.equal(FaceHandRefiner(tiny()).slots, slots)


def test_untrained_is_identity_and_body_untouched():
    motion, audio, idx = inputs()
    assert torch.equal(FaceHandRefiner(tiny())(motion, audio, idx), motion)
    model = perturbed()
    out = model(motion, audio, idx)
    body = torch.ones(KC, dtype=torch.bool)
    body[model.slots] = False
    assert torch.equal(out[:, :, body], motion[:, :, body])
    assert not torch.equal(out[:, :, model.slots], motion[:, :, model.slots])


def test_time_index_and_audio_condition_the_residual():
    model = perturbed(1)
    motion, audio, idx = inputs()
    base = model(motion, audio, idx)
    assert not torch.allclose(model(motion, audio, idx + 100), base)
    assert not torch.allclose(model(motion, audio + 1, idx), base)
    # frames are refined independently: frame 0 does not depend on frame 2's motion
    moved = motion.clone()
    moved[:, 2] += 1
    assert torch.equal(model(moved, audio, idx)[:, 0], base[:, 0])


def test_pretrained_round_trip(tmp_path):
    model = perturbed(2)
    motion, audio, idx = inputs()
    model.save_pretrained(tmp_path / "ref")
    loaded = FaceHandRefiner.from_pretrained(tmp_path / "ref")
    assert loaded.config == model.config
    assert torch.equal(loaded(motion, audio, idx), model(motion, audio, idx))
    with pytest.raises(ValueError, match="FaceHandRefiner"):
        MotionDiT.from_pretrained(tmp_path / "ref")
    (tmp_path / "ref" / "config.json").unlink()
    with pytest.raises(ValueError, match="config.json"):
        FaceHandRefiner.from_pretrained(tmp_path / "ref")


def test_input_checks():
    model = FaceHandRefiner(tiny())
    motion, audio, idx = inputs()
    with pytest.raises(ValueError, match="n_slots"):
        FaceHandRefiner(tiny(n_slots=10))
    with pytest.raises(ValueError, match="frame_index"):
        model(motion, audio, idx.float())
    with pytest.raises(ValueError, match="frame_index"):
        model(motion, audio, idx - 10)
    with pytest.raises(ValueError, match="audio"):
        model(motion, audio[..., :3], idx)
    with pytest.raises(ValueError, match="motion"):
        model(motion[:, :, :10], audio, idx)
    with pytest.raises(ValueError, match="target"):
        model.loss(motion, motion[:, :1], audio, idx)
    with pytest.raises(ValueError, match="slot_mask"):
        model.loss(motion, motion, audio, idx, slot_mask=torch.ones(10))


def test_loss_counts_refined_slots_only():
    model = FaceHandRefiner(tiny())
    motion, audio, idx = inputs()
    target = motion.clone()
    body = torch.ones(KC, dtype=torch.bool)
    body[model.slots] = False
    target[:, :, body] += 5.0                                    # body errors are not the refiner's job
    assert float(model.loss(motion, target, audio, idx)["loss_refine"]) == 0.0
    target[:, :, model.slots[:1]] += 2.0
    mask = torch.zeros(KC, dtype=torch.bool)
    mask[model.slots[:1]] = True
    out = model.loss(motion, target, audio, idx, slot_mask=mask)
    assert abs(float(out["loss_refine"]) - 4.0) < 1e-5 and set(out) == {"loss", "loss_refine"}


def test_training_learns_a_residual():
    """Target = input + (audio feature 0) on channel 0 of every refined slot; 80 Adam steps cut the loss > 5x
    (about 30x on seeds 0-3)."""
    torch.manual_seed(0)
    model = FaceHandRefiner(tiny())
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)

    def batch():
        motion = 0.1 * torch.randn(2, 2, KC, 3, generator=gen)
        audio = torch.randn(2, 2, D, generator=gen)
        target = motion.clone()
        target[:, :, model.slots, 0] += audio[..., :1]
        return motion, target, audio, torch.tensor([[0, 1], [7, 8]])

    fixed = batch()
    with torch.no_grad():
        start = float(model.loss(*fixed)["loss"])
    for _ in range(80):
        out = model.loss(*batch())
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    with torch.no_grad():
        assert float(model.loss(*fixed)["loss"]) < start / 5
