"""Score distillation mechanics (distill/vsd.py): the autograd gradient on the rendered input is exactly
w(t) * (eps_hat - eps_ref), and it reaches the Gaussian parameters through the rasterizer."""
import math

import pytest
import torch

pytest.importorskip("diffusers")
from diffusers import DDPMScheduler, UNet2DModel  # noqa: E402

import cuda_ext  # noqa: E402
from distill.vsd import add_noise, lora_denoise_loss, sds_weight, vsd_loss  # noqa: E402

SIZE = 16


def tiny_unet(seed):
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=SIZE, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4).eval()


@pytest.fixture(scope="module")
def teacher():
    return tiny_unet(0)


@pytest.fixture(scope="module")
def alphas():
    return DDPMScheduler(num_train_timesteps=1000).alphas_cumprod


def score_fn(unet):
    return lambda x_t, t: unet(x_t, t).sample


def expected_grad(unet, x, t, noise, w, alphas, eps_ref=None):
    with torch.no_grad():
        eps_hat = unet(add_noise(x.detach(), t, noise, alphas), t).sample
    return w.view(-1, 1, 1, 1) * (eps_hat - (noise if eps_ref is None else eps_ref))


def test_sds_gradient_is_weighted_score_difference(teacher, alphas):
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(2, 3, SIZE, SIZE, generator=g) * 2 - 1).requires_grad_()
    t = torch.tensor([100, 700])
    noise = torch.randn(x.shape, generator=g)
    w = sds_weight(alphas, t)
    out = vsd_loss(score_fn(teacher), x, t, noise, w, alphas_cumprod=alphas)
    assert set(out) == {"loss_sds", "score_grad_norm", "t_mean"}
    out["loss_sds"].backward()
    want = expected_grad(teacher, x, t, noise, w, alphas)
    assert torch.allclose(x.grad, want, atol=1e-6, rtol=1e-5), float((x.grad - want).abs().max())
    assert not any(p.grad is not None for p in teacher.parameters())       # nothing flows into the teacher
    loss = float(out["loss_sds"].detach())
    assert math.isclose(loss, 0.5 * float((want ** 2 / w.view(-1, 1, 1, 1)).sum()), rel_tol=1e-4)


def test_vsd_gradient_uses_the_particle_model(teacher, alphas):
    lora = tiny_unet(1)
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(1, 3, SIZE, SIZE, generator=g) * 2 - 1).requires_grad_()
    t = torch.tensor([400])
    noise = torch.randn(x.shape, generator=g)
    out = vsd_loss(score_fn(teacher), x, t, noise, 0.7, lora_score_fn=score_fn(lora), alphas_cumprod=alphas)
    out["loss_vsd"].backward()
    with torch.no_grad():
        eps_lora = lora(add_noise(x.detach(), t, noise, alphas), t).sample
    want = expected_grad(teacher, x, t, noise, torch.tensor([0.7]), alphas, eps_ref=eps_lora)
    assert torch.allclose(x.grad, want, atol=1e-6, rtol=1e-5)
    # the particle model learns from the renders with its own loss; the renders get nothing from it
    x.grad = None
    lora_denoise_loss(score_fn(lora), x, t, noise, alphas_cumprod=alphas)["loss_vsd_lora"].backward()
    assert x.grad is None and all(torch.isfinite(p.grad).all() for p in lora.parameters() if p.grad is not None)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora.parameters())


def gaussians(n=6, seed=3):
    g = torch.Generator().manual_seed(seed)
    means = torch.cat([torch.rand(n, 2, generator=g) - 0.5, 3 + 0.2 * torch.rand(n, 1, generator=g)], 1)
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1)
    scales = 0.15 + 0.1 * torch.rand(n, 3, generator=g)
    opacities = 0.5 + 0.4 * torch.rand(n, generator=g)
    colors = torch.rand(n, 3, generator=g)
    return [p.requires_grad_() for p in (means, quats, scales, opacities, colors)]


def camera():
    K = torch.tensor([[20.0, 0.0, SIZE / 2], [0.0, 20.0, SIZE / 2], [0.0, 0.0, 1.0]])
    return torch.eye(4)[None], K[None]


def test_sds_gradient_reaches_the_gaussians_through_the_rasterizer(teacher, alphas):
    means, quats, scales, opacities, colors = gaussians()
    viewmats, Ks = camera()
    img, alpha, _ = cuda_ext.rasterization(means, quats, scales, opacities, colors, viewmats, Ks, SIZE, SIZE,
                                           backend="reference")
    assert img.shape == (1, SIZE, SIZE, 3) and float(alpha.detach().max()) > 0.3       # the Gaussians are in view
    pixels = img.permute(0, 3, 1, 2) * 2 - 1
    pixels.retain_grad()
    t = torch.tensor([300])
    noise = torch.randn(pixels.shape, generator=torch.Generator().manual_seed(4))
    w = sds_weight(alphas, t)
    vsd_loss(score_fn(teacher), pixels, t, noise, w, alphas_cumprod=alphas)["loss_sds"].backward()
    assert torch.allclose(pixels.grad, expected_grad(teacher, pixels, t, noise, w, alphas), atol=1e-6, rtol=1e-5)
    for name, p in (("means", means), ("colors", colors), ("scales", scales), ("opacities", opacities)):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().sum()) > 0, name


def test_latent_sds_through_the_echomimic_v2_teacher_reaches_the_gaussians():
    """Rendered pixels -> the tiny EchoMimicV2 teacher's VAE encoder -> latent SDS with its video denoiser."""
    pytest.importorskip("transformers")
    import numpy as np

    from distill.teachers.echomimic_v2 import EchoMimicV2Config, EchoMimicV2Teacher
    torch.manual_seed(0)
    teacher = EchoMimicV2Teacher(**vars(EchoMimicV2Config.tiny(width=SIZE * 2, height=SIZE * 2)))
    photo = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    cond = teacher.make_conditions(photo, torch.randn(640) * 0.1)                 # one frame
    alphas_t = teacher.components.scheduler().alphas_cumprod
    means, quats, scales, opacities, colors = gaussians()
    viewmats, Ks = camera()
    Ks = Ks.clone()
    Ks[:, :2] *= 2                                                              # a 32x32 render
    img, _, _ = cuda_ext.rasterization(means, quats, scales, opacities, colors, viewmats, Ks, SIZE * 2, SIZE * 2,
                                       backend="reference")
    latents = teacher.encode(img.permute(0, 3, 1, 2) * 2 - 1)                 # [1, 4, 16, 16]
    latents.retain_grad()
    t = torch.tensor([500])
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(5))

    def score(x_t, tt):
        return teacher.score(x_t, tt, cond)

    out = vsd_loss(score, latents, t, noise, 1.0, alphas_cumprod=alphas_t)
    out["loss_sds"].backward()
    with torch.no_grad():
        want = score(add_noise(latents.detach(), t, noise, alphas_t), t) - noise
    assert torch.allclose(latents.grad, want, atol=1e-5, rtol=1e-4)
    assert float(means.grad.abs().sum()) > 0 and float(colors.grad.abs().sum()) > 0
    assert torch.isfinite(means.grad).all() and torch.isfinite(colors.grad).all()


def test_bad_inputs_are_named(teacher, alphas):
    x = torch.zeros(2, 3, SIZE, SIZE, requires_grad=True)
    with pytest.raises(ValueError, match="noise"):
        vsd_loss(score_fn(teacher), x, torch.tensor([1, 2]), torch.zeros(2, 3, 8, 8), 1.0, alphas_cumprod=alphas)
    with pytest.raises(ValueError, match="t:"):
        vsd_loss(score_fn(teacher), x, torch.tensor([1, 1000]), torch.zeros_like(x), 1.0, alphas_cumprod=alphas)
    with pytest.raises(ValueError, match="weight"):
        vsd_loss(score_fn(teacher), x, torch.tensor(5), torch.zeros_like(x), torch.ones(3), alphas_cumprod=alphas)
    with pytest.raises(ValueError, match="kind"):
        sds_weight(alphas, torch.tensor([3]), kind="nope")
