"""engine/deform/decoder.py and tests/quaternion.py: quaternion helpers against hand computations and rotation
matrices, the zero-initialised head, bitwise rest pose, translation / rotation / scale / colour / opacity deltas,
the fast paths agreeing with the full ones, gradients from a zero head, save/load and input checks."""
import math

import pytest
import torch
import torch.nn.functional as F

from cuda_ext.reference import quat_to_rotmat
from engine.deform.decoder import DELTA_CHANNELS, DecoderConfig, GaussianDecoder
from distill.embedding import AudioMotionEmbedding, EmbeddingConfig
from engine.render.gaussians import Gaussians, sh_dc_to_rgb
from quaternion import quat_multiply, rotvec_to_quat

N, K, J = 300, 7, 3
FIELDS = ("means", "quats", "scales", "opacities", "sh")


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def scene(sh_coeffs: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    opac = torch.rand(N, generator=g)
    opac[:3] = torch.tensor([0.0, 1.0, 0.5])
    gs = Gaussians(torch.randn(N, 3, generator=g), F.normalize(torch.randn(N, 4, generator=g), dim=-1),
                   torch.rand(N, 3, generator=g) * 0.05 + 1e-3, opac, torch.randn(N, sh_coeffs, 3, generator=g))
    index = torch.stack([torch.randperm(K, generator=g)[:J] for _ in range(N)])
    weight = torch.rand(N, J, generator=g) + 0.1
    return gs, index, weight / weight.sum(-1, keepdim=True)


def decoder(**kw) -> GaussianDecoder:
    torch.manual_seed(0)
    return GaussianDecoder(DecoderConfig(n_particles=K, hidden=16, embed=4, **kw))


def perturb(model: torch.nn.Module, head: bool = True) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if head or not name.startswith("head."):
                p.add_(0.1 * torch.randn_like(p))


def set_head_bias(model: GaussianDecoder, channels: slice, values) -> None:
    with torch.no_grad():
        model.head.bias[channels] = torch.as_tensor(values, dtype=torch.float32)


def assert_same(a: Gaussians, b: Gaussians, skip=()) -> None:
    for f in FIELDS:
        if f not in skip:
            assert torch.equal(getattr(a, f), getattr(b, f)), f


def assert_close(a: Gaussians, b: Gaussians, tol: float = 1e-6) -> None:
    """Equal up to float rounding: a batched matmul may block its sums differently from a single one (seen with
    torch 2.11's CPU BLAS on 16 cores), so batch-vs-single is not bit-exact everywhere."""
    for f in FIELDS:
        diff = float((getattr(a, f) - getattr(b, f)).abs().max())
        assert diff <= tol, f"{f}: max |diff| {diff:.3g} > {tol}"


# ---------------------------------------------------------------------------------------------- quaternions
def test_quat_multiply_hand_products_and_rotation_matrices():
    one, i, j, k = torch.eye(4)
    assert torch.equal(quat_multiply(i, j), k) and torch.equal(quat_multiply(j, i), -k)
    assert torch.equal(quat_multiply(i, i), -one) and torch.equal(quat_multiply(k, i), j)
    a, b = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([5.0, 6.0, 7.0, 8.0])
    # (1 + 2i + 3j + 4k)(5 + 6i + 7j + 8k) expanded by hand
    assert quat_multiply(a, b).tolist() == [-60.0, 12.0, 30.0, 24.0]
    q = F.normalize(torch.randn(50, 4, dtype=torch.float64), dim=-1)
    p = F.normalize(torch.randn(50, 4, dtype=torch.float64), dim=-1)
    assert torch.allclose(quat_to_rotmat(quat_multiply(q, p)), quat_to_rotmat(q) @ quat_to_rotmat(p), atol=1e-12)
    assert torch.equal(quat_multiply(one.expand(50, 4), q.float()), q.float())       # identity: bitwise


def _rodrigues(v: torch.Tensor) -> torch.Tensor:
    theta = v.norm()
    if theta == 0:
        return torch.eye(3, dtype=v.dtype)
    x, y, z = (v / theta).tolist()
    Kx = torch.tensor([[0, -z, y], [z, 0, -x], [-y, x, 0]], dtype=v.dtype)
    return torch.eye(3, dtype=v.dtype) + math.sin(theta) * Kx + (1 - math.cos(theta)) * Kx @ Kx


def test_rotvec_to_quat_matches_rodrigues_and_is_exact_at_zero():
    torch.manual_seed(0)
    vs = torch.cat([torch.randn(20, 3, dtype=torch.float64) * 2, torch.randn(5, 3, dtype=torch.float64) * 1e-6])
    q = rotvec_to_quat(vs)
    assert torch.allclose(q.norm(dim=-1), torch.ones(25, dtype=torch.float64), atol=1e-12)
    for v, qi in zip(vs, q):
        assert torch.allclose(quat_to_rotmat(qi), _rodrigues(v), atol=1e-10)
    assert rotvec_to_quat(torch.tensor([0.0, 0.0, math.pi])).tolist() == pytest.approx([0.0, 0.0, 0.0, 1.0], abs=1e-7)
    assert torch.equal(rotvec_to_quat(torch.zeros(3)), torch.tensor([1.0, 0.0, 0.0, 0.0]))
    v = torch.zeros(4, 3, requires_grad=True)
    rotvec_to_quat(v)[:, 1:].sum().backward()
    assert torch.equal(v.grad, torch.full((4, 3), 0.5))                              # d(v k)/dv = 1/2 at 0


def test_decoder_rotation_matches_the_reference_helpers():
    torch.manual_seed(1)
    q = F.normalize(torch.randn(400, 4), dim=-1) * 1.3                           # not unit: result is still unit
    r = torch.randn(400, 3) * torch.logspace(-7, 0.5, 400).unsqueeze(1)
    r[:5] = 0.0
    got = decoder()._rotate(q, r[:, 0].contiguous(), r[:, 1].contiguous(), r[:, 2].contiguous())
    want = F.normalize(quat_multiply(rotvec_to_quat(r), q), dim=-1)
    assert torch.allclose(got[5:], want[5:], atol=1e-6)
    assert torch.equal(got[:5], q[:5])                                           # zero rotation: bitwise q


# ---------------------------------------------------------------------------------------------- decoder
def test_untrained_decoder_outputs_exact_zeros_on_both_paths():
    model = decoder()
    motion = torch.randn(5, K, 3)
    for skip in (True, False):
        model.skip_zero_work = skip
        with torch.no_grad():
            assert torch.equal(model(motion), torch.zeros(5, K, DELTA_CHANNELS))
    assert torch.equal(model(motion), torch.zeros(5, K, DELTA_CHANNELS))        # with autograd on, too


@pytest.mark.parametrize("sh_coeffs", [1, 4])
def test_zero_motion_and_zero_deltas_return_bitwise_the_same_gaussians(sh_coeffs):
    g, index, weight = scene(sh_coeffs)
    model = decoder()
    perturb(model, head=False)                                                   # trunk nonzero, head still zero
    for skip in (True, False):
        model.skip_zero_work = skip
        with torch.no_grad():
            assert_same(model.deform(g, index, weight, torch.zeros(K, 3)), g)
        assert_same(model.deform(g, index, weight, torch.zeros(K, 3)), g)       # autograd on: the full path


def test_pure_translation_moves_every_mean_by_v():
    g, index, weight = scene()
    model = decoder()
    v = torch.tensor([0.3, -1.2, 0.05])
    for skip in (True, False):
        model.skip_zero_work = skip
        with torch.no_grad():
            out = model.deform(g, index, weight, v.expand(K, 3))
        assert torch.allclose(out.means, g.means + v, atol=1e-6, rtol=0)
        assert_same(out, g, skip=("means",))


def test_fast_paths_agree_with_the_full_computation():
    g, index, weight = scene()
    model = decoder()
    perturb(model, head=False)
    motion = torch.randn(K, 3)
    with torch.no_grad():
        model.skip_zero_work = True
        fast = model.deform(g, index, weight, motion)
        model.skip_zero_work = False
        full = model.deform(g, index, weight, motion)
    assert_same(fast, full)
    perturb(model)                                                               # a nonzero head: one path
    with torch.no_grad():
        model.skip_zero_work = False
        full = model.deform(g, index, weight, motion)
        model.skip_zero_work = True
        assert_same(model.deform(g, index, weight, motion), full)
        batch = model.deform_batch(g, index, weight, torch.stack([motion, -motion, 0 * motion]))
        assert_close(batch[0], full)
        assert_close(batch[1], model.deform(g, index, weight, -motion))


def test_head_bias_rotation_about_z_rotates_every_gaussian():
    g, index, weight = scene()
    model = decoder()
    theta = 0.4
    set_head_bias(model, slice(3, 6), [0.0, 0.0, theta])                         # d_rotvec = (0, 0, theta)
    with torch.no_grad():
        out = model.deform(g, index, weight, torch.zeros(K, 3))
    c, s = math.cos(theta), math.sin(theta)
    Rz = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    assert torch.allclose(quat_to_rotmat(out.quats), Rz @ quat_to_rotmat(g.quats), atol=1e-5)
    assert torch.allclose(out.quats.norm(dim=-1), torch.ones(N), atol=1e-6)
    assert_same(out, g, skip=("quats",))


def test_head_bias_scale_colour_and_opacity():
    g, index, weight = scene()
    model = decoder()
    set_head_bias(model, slice(6, 9), [math.log(2.0)] * 3)                       # scales double
    set_head_bias(model, slice(9, 12), [0.1, -0.2, 0.05])                        # colours shift
    with torch.no_grad():
        out = model.deform(g, index, weight, torch.zeros(K, 3))
    assert torch.allclose(out.scales, 2 * g.scales, rtol=1e-6)
    rgb = sh_dc_to_rgb(out.sh[:, 0]) - sh_dc_to_rgb(g.sh[:, 0])
    assert torch.allclose(rgb, torch.tensor([0.1, -0.2, 0.05]).expand(N, 3), atol=1e-5)
    assert torch.equal(out.sh[:, 1:], g.sh[:, 1:])                               # only the DC term changes
    assert torch.equal(out.means, g.means) and torch.equal(out.quats, g.quats)
    for bias, want in ((5.0, 1.0), (-5.0, 0.0)):
        set_head_bias(model, slice(12, 13), [bias])
        with torch.no_grad():
            assert torch.equal(model.deform(g, index, weight, torch.zeros(K, 3)).opacities, torch.full((N,), want))
    set_head_bias(model, slice(12, 13), [0.01])
    with torch.no_grad():
        opac = model.deform(g, index, weight, torch.zeros(K, 3)).opacities
    assert opac.min() >= 0 and opac.max() <= 1 and opac[1] == 1.0
    assert torch.allclose(opac[2:], (g.opacities[2:] + 0.01).clamp(0, 1), atol=1e-6)


def test_gradients_reach_every_head_channel_from_zero_init():
    g, index, weight = scene()
    model = decoder()
    out = model.deform(g, index, weight, 0.1 * torch.randn(K, 3))
    loss = sum((getattr(out, f) * torch.randn_like(getattr(out, f))).sum() for f in FIELDS)
    loss.backward()
    grad = model.head.weight.grad
    assert torch.isfinite(grad).all()
    assert (grad.abs().sum(dim=1) > 0).all(), "every delta channel must receive gradient"


def test_differentiable_skin_weights_match_the_cached_sparse_path():
    g, index, weight = scene()
    model = decoder()
    perturb(model)
    motion = torch.randn(K, 3)
    with torch.no_grad():
        sparse = model.deform(g, index, weight, motion)
    w = weight.clone().requires_grad_()
    dense = model.deform(g, index, w, motion)
    for f in FIELDS:
        assert torch.allclose(getattr(dense, f), getattr(sparse, f), atol=1e-6), f
    dense.means.sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()


def test_skin_cache_follows_in_place_edits():
    g, index, weight = scene()
    model = decoder()
    v = torch.ones(K, 3)
    with torch.no_grad():
        model.deform(g, index, weight, v)
        weight[:, 0] += 1.0                                                      # rows now sum to 2
        out = model.deform(g, index, weight, v)
    assert torch.allclose(out.means, g.means + 2.0, atol=1e-5)


def test_save_load_round_trip(tmp_path):
    model = decoder(input_scale=4.0)
    perturb(model)
    model.eval()
    motion = torch.randn(3, K, 3)
    path = model.save_pretrained(tmp_path / "dec")
    loaded = GaussianDecoder.from_pretrained(path)
    assert loaded.config == model.config
    g, index, weight = scene()
    with torch.no_grad():
        assert torch.equal(loaded(motion), model(motion))
        assert_same(loaded.deform(g, index, weight, motion[0]), model.deform(g, index, weight, motion[0]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="missing"):
        GaussianDecoder.from_pretrained(tmp_path / "empty")
    AudioMotionEmbedding(EmbeddingConfig(n_slots=2, audio_dim=4, dim=4, hidden=4)).save_pretrained(tmp_path / "emb")
    with pytest.raises(ValueError, match="AudioMotionEmbedding"):
        GaussianDecoder.from_pretrained(tmp_path / "emb")


def test_bad_inputs_raise_value_errors():
    g, index, weight = scene()
    model = decoder()
    with pytest.raises(ValueError, match="motion"):
        model(torch.zeros(2, K + 1, 3))
    with pytest.raises(ValueError, match="motion"):
        model(torch.zeros(K, 3))                                                 # forward wants [T, K, 3]
    with pytest.raises(ValueError, match="motion"):
        model.deform(g, index, weight, torch.zeros(K, 2))
    with pytest.raises(ValueError, match="finite"):
        model.deform(g, index, weight, torch.full((K, 3), float("nan")))
    with pytest.raises(ValueError, match="motion"):
        model.deform(g, index, weight, torch.zeros(K, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="skin_index"):
        model.deform(g, index[1:], weight, torch.zeros(K, 3))
    with pytest.raises(ValueError, match="skin_weight"):
        model.deform(g, index, weight[:, :2], torch.zeros(K, 3))
    with pytest.raises(ValueError, match="skin_index"):
        model.deform(g, index + K, weight, torch.zeros(K, 3))
    with pytest.raises(ValueError, match="skin_index"):
        model.deform(g, index.float(), weight, torch.zeros(K, 3))
    with pytest.raises(ValueError, match="g:"):
        model.deform("not gaussians", index, weight, torch.zeros(K, 3))
    with pytest.raises(ValueError, match="n_particles"):
        DecoderConfig(n_particles=0)
    with pytest.raises(ValueError, match="input_scale"):
        DecoderConfig(n_particles=3, input_scale=-1.0)
    with pytest.raises(ValueError, match="v:"):
        rotvec_to_quat(torch.zeros(4))
    with pytest.raises(ValueError, match="b:"):
        quat_multiply(torch.zeros(4), torch.zeros(3))


def test_inconsistent_gaussians_raise_value_errors():
    g, index, weight = scene()
    model = decoder()
    bad = Gaussians(g.means, g.quats[:, :3], g.scales, g.opacities, g.sh)
    with pytest.raises(ValueError, match="g.quats"):
        model.deform(bad, index, weight, torch.zeros(K, 3))
    bad = Gaussians(g.means, g.quats, g.scales, g.opacities, g.sh[:, :, :2])
    with pytest.raises(ValueError, match="g.sh"):
        model.deform(bad, index, weight, torch.zeros(K, 3))


def test_the_decoder_moves_between_dtypes_and_devices_like_any_module():
    """nn.Module.to / .double go through Module._apply: the decoder must not shadow it."""
    dec = GaussianDecoder(DecoderConfig(n_particles=4)).to("cpu").double()
    assert dec.head.weight.dtype == torch.float64
