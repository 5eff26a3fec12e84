"""PSNR and SSIM against scikit-image's implementations (an evaluator we did not write)."""
import pytest
import torch

from engine.render.metrics import psnr, ssim

skimage_metrics = pytest.importorskip("skimage.metrics", reason="scikit-image is a test extra")


def test_psnr_and_ssim_match_scikit_image():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(64, 80, 3, generator=g)
    b = (a + 0.1 * torch.randn(64, 80, 3, generator=g)).clamp(0, 1)
    ref_psnr = skimage_metrics.peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=1.0)
    assert abs(psnr(a, b) - ref_psnr) < 1e-4
    ref = skimage_metrics.structural_similarity(a.numpy(), b.numpy(), data_range=1.0, channel_axis=-1,
                                                gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    # scikit-image averages only the pixels whose window fits (it crops 5 px borders); do the same
    from engine.render.metrics import ssim_map
    ours = float(ssim_map(a, b)[5:-5, 5:-5].mean())
    assert abs(ours - ref) < 1e-4, (ours, ref)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    mask = torch.zeros(64, 80, dtype=torch.bool)
    mask[10:30, 10:40] = True
    assert abs(psnr(a, b, mask) - skimage_metrics.peak_signal_noise_ratio(
        a[mask].numpy(), b[mask].numpy(), data_range=1.0)) < 1e-4
