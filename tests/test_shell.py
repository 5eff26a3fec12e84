"""Front/back shells through the photo camera: rendered from that camera they reproduce the photo inside the
silhouette, they cover it, and the orbit to +-30 degrees has no holes."""
import math

import torch

import cuda_ext
from engine.render.camera import intrinsics, look_at
from engine.avatar.inflate import inflate
from engine.avatar.shell import ShellConfig, build_shells


def render(g, viewmat, K, w, h):
    img, alpha, _ = cuda_ext.rasterization(g.means, g.quats, g.scales, g.opacities, g.sh, viewmat[None], K[None],
                                           w, h, sh_degree=0)
    return img[0], alpha[0, ..., 0]


def psnr(a, b):
    return float(10 * torch.log10(1.0 / ((a - b) ** 2).mean()))


def photo_of_a_ball(size=96):
    """A shaded, striped ball on white: the silhouette is a disc."""
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    c = size / 2
    r2 = (xx - c) ** 2 + (yy - c) ** 2
    mask = r2 <= (0.38 * size) ** 2
    image = torch.ones(size, size, 3)
    stripes = 0.5 + 0.3 * torch.sin(xx / 4)[..., None] * torch.tensor([1.0, 0.4, -0.6])
    image[mask] = stripes[mask].clamp(0, 1)
    return image, mask


def test_front_view_reproduces_the_photo_inside_the_silhouette():
    image, mask = photo_of_a_ball()
    K = intrinsics(96, 96, 30.0)
    fine = torch.zeros_like(mask)
    fine[30:60, 30:60] = True
    g, pixel, is_front = build_shells(image, mask, (0.6 * inflate(mask),) * 2, K, fine, ShellConfig(stride=2))
    n_front = int(is_front.sum())
    on_grid = lambda step: (torch.arange(96)[:, None] % step == 0) & (torch.arange(96)[None] % step == 0)  # noqa: E731
    assert n_front == int((mask & (fine | on_grid(2))).sum())            # every fine pixel, every 2nd elsewhere
    assert len(g) - n_front == int((mask & on_grid(4)).sum())          # the sparser back: every 4th pixel
    img, alpha = render(g, torch.eye(4), K, 96, 96)
    assert float(alpha[mask].mean()) > 0.97
    assert psnr(img[mask], image[mask]) > 28.0                        # before any photometric fit (31 dB measured)
    # every Gaussian projects back onto the pixel it came from
    uv = (K @ (g.means / g.means[:, 2:]).T).T[:, :2]
    assert float((uv - (pixel + 0.5)).abs().max()) < 1e-3


def test_orbit_to_30_degrees_has_no_holes():
    image, mask = photo_of_a_ball()
    K = intrinsics(96, 96, 30.0)
    cfg = ShellConfig(stride=2)
    g, _, _ = build_shells(image, mask, (inflate(mask),) * 2, K, None, cfg)
    target = torch.tensor([0.0, 0.0, cfg.z0])
    for angle in (-30.0, 30.0):
        a = math.radians(angle)
        eye = target + cfg.z0 * torch.tensor([math.sin(a), 0.0, -math.cos(a)])
        vm = look_at(eye, target)
        _, alpha = render(g, vm, K, 96, 96)
        # re-projected silhouette: where the Gaussian centres land, closed by a 3x3 dilation
        cam = (vm[:3, :3] @ g.means.T).T + vm[:3, 3]
        uv = ((K @ (cam / cam[:, 2:]).T).T[:, :2]).floor().long().clamp(0, 95)
        sil = torch.zeros(96, 96)
        sil[uv[:, 1], uv[:, 0]] = 1
        sil = torch.nn.functional.max_pool2d(sil[None, None], 3, 1, 1)[0, 0] > 0
        coverage = float((alpha[sil] > 0.5).float().mean())
        assert coverage >= 0.95, f"{angle} degrees: alpha covers {coverage:.3f} of the silhouette"
