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


def shells_of_a_ball():
    """The ball's front and back shells (stride 2) on its full inflated relief -> (Gaussians, K [3, 3], config)."""
    image, mask = photo_of_a_ball()
    K = intrinsics(96, 96, 30.0)
    cfg = ShellConfig(stride=2)
    g, _, _ = build_shells(image, mask, (inflate(mask),) * 2, K, None, cfg)
    return g, K, cfg


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
    g, K, cfg = shells_of_a_ball()
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


def test_surfels_lie_in_the_surface_and_stretch_with_its_slope():
    from cuda_ext.reference import quat_to_rotmat
    from engine.avatar.shell import quats_from_frames, surfel_frames

    gen = torch.Generator().manual_seed(0)
    n = torch.randn(400, 3, generator=gen)
    n = n / n.norm(dim=1, keepdim=True)
    n[:3] = torch.tensor([0.0, 0.0, -1.0])                                   # facing the camera exactly
    quats, stretch = surfel_frames(n, 4.0)
    R = quat_to_rotmat(quats)
    assert float((R[:, :, 2] - n).abs().max()) < 1e-4                        # local z is the normal
    assert float((torch.linalg.det(R) - 1).abs().max()) < 1e-4
    lean = torch.cat([n[:, :2], torch.zeros(400, 1)], 1)
    tilted = lean.norm(dim=1) > 0.1
    assert float((R[tilted, :, 0] * n[tilted]).sum(-1).abs().max()) < 1e-4    # local x in the surface ...
    assert bool(((R[tilted, :, 0] * lean[tilted]).sum(-1) > 0).all())         # ... along the slope
    assert torch.allclose(stretch, (1 / n[:, 2].abs()).clamp(max=4.0), rtol=1e-5)
    Q = torch.linalg.qr(torch.randn(50, 3, 3, generator=gen))[0]
    Q = Q * torch.linalg.det(Q).sign()[:, None, None]
    assert float((quat_to_rotmat(quats_from_frames(Q)) - Q).abs().max()) < 1e-5


def test_a_ball_seen_from_the_side_has_no_see_through_stripes():
    g, K, cfg = shells_of_a_ball()
    target = torch.tensor([0.0, 0.0, cfg.z0])
    vm = look_at(target + cfg.z0 * torch.tensor([1.0, 0.0, 0.0]), target)   # 90 degrees: edge-on to the photo
    _, alpha = render(g, vm, K, 96, 96)
    inside = alpha > 0.5
    rows, cols = inside.any(1).nonzero()[:, 0], inside.any(0).nonzero()[:, 0]
    core = alpha[int(rows.min()) + 3:int(rows.max()) - 2, int(cols.min()) + 3:int(cols.max()) - 2]
    # the silhouette of a ball from the side is a disc: inside its bounding box's core, a disc-shaped area
    yy, xx = torch.meshgrid(torch.arange(core.shape[0]) + 0.5, torch.arange(core.shape[1]) + 0.5, indexing="ij")
    cy, cx = core.shape[0] / 2, core.shape[1] / 2
    disc = ((yy - cy) / cy) ** 2 + ((xx - cx) / cx) ** 2 < 0.8
    # camera-facing discs (before surfels) covered 0.69 of it here, in rings; surfels 0.988
    assert float((core[disc] > 0.5).float().mean()) > 0.97


def test_rim_walls_close_the_seam_and_the_cut_by_the_frame():
    from engine.avatar.shell import rim_walls

    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[30:, 12:52] = True                                                  # runs off the bottom edge
    front, back = torch.full((64, 64), 8.0), torch.full((64, 64), 12.0)
    K = intrinsics(64, 64, 30.0)
    cfg = ShellConfig()
    g, px, normals = rim_walls(mask, (front, back), K, cfg, step=3)
    x, y = px[:, 0], px[:, 1]
    on_ring = (y == 30) | (y == 63) | (x == 12) | (x == 51)
    assert bool(on_ring.all()) and bool(mask[y, x].all())                    # only the mask's outermost ring
    bottom = (y == 63) & (x > 18) & (x < 45)                              # away from the corners
    left = (x == 12) & (y > 37) & (y < 56)
    assert torch.allclose(normals[bottom], torch.tensor([0.0, 1.0, 0.0]).expand(int(bottom.sum()), 3), atol=1e-3)
    assert torch.allclose(normals[left], torch.tensor([-1.0, 0.0, 0.0]).expand(int(left.sum()), 3), atol=1e-3)
    from cuda_ext.reference import quat_to_rotmat
    assert float((quat_to_rotmat(g.quats)[:, :, 2] - normals).abs().max()) < 1e-4   # discs face outward
    fx = float(K[0, 0])
    z = g.means[:, 2]
    assert float(z.min()) >= cfg.z0 - 8.0 * cfg.z0 / fx and float(z.max()) <= cfg.z0 + 12.0 * cfg.z0 / fx
    column = (x == 21) & (y == 63)                                           # (x + y) even: on the ring
    assert int(column.sum()) == 4                                            # 20 px of depth, 6 px apart at most
    # each disc spans its 5 px of the column (sigma 0.6 x 5 px along the depth) and 0.6 x 3 px across it
    zc = g.means[column, 2]
    assert torch.allclose(g.scales[column, 0], cfg.footprint * 5.0 * zc / fx, rtol=1e-4)
    assert torch.allclose(g.scales[column, 1], cfg.footprint * 3.0 * zc / fx, rtol=1e-4)


def test_crack_walls_span_a_step_inside_the_shell_and_face_its_low_side():
    from cuda_ext.reference import quat_to_rotmat
    from engine.avatar.shell import crack_walls

    mask = torch.ones(40, 40, dtype=torch.bool)
    front = torch.full((40, 40), 5.0)
    front[:, 20:] = 17.0                                                     # a 12 px step between x 19 and 20
    K = intrinsics(40, 40, 30.0)
    cfg = ShellConfig()
    g, px, normals = crack_walls(mask, front, -1.0, K, cfg, min_jump=3.0, step=3)
    x, y = px[:, 0], px[:, 1]
    assert bool((x == 20).all())                                             # from the near side of the step only
    assert bool(((x + y) % 2 == 0).all()) and int(y.min()) == 2 and int(y.max()) == 38   # off the outermost ring
    assert torch.allclose(normals, torch.tensor([-1.0, 0.0, 0.0]).expand(len(normals), 3))   # towards x < 20
    assert float((quat_to_rotmat(g.quats)[:, :, 2] - normals).abs().max()) < 1e-4
    fx = float(K[0, 0])
    z = g.means[:, 2]
    near, far = cfg.z0 - 17.0 * cfg.z0 / fx, cfg.z0 - 5.0 * cfg.z0 / fx
    assert float(z.min()) > near and float(z.max()) < far                    # between the two surfaces
    column = y == 10
    assert int(column.sum()) == 4                                            # 12 px of depth, 3 px apart
    u = g.means[column, 0] / g.means[column, 2] * fx + K[0, 2]
    assert torch.allclose(u, torch.full_like(u, 20.0), atol=1e-4)            # on the edge between the two pixels
    flat, _, _ = crack_walls(mask, torch.full((40, 40), 5.0), -1.0, K, cfg)
    assert len(flat) == 0
    face = torch.zeros(40, 40, dtype=torch.bool)
    face[:, 10:30] = True                                                    # the step lies inside the face
    inside, _, _ = crack_walls(mask, front, -1.0, K, cfg, within=face)
    assert len(inside) == 0


def test_the_halo_ring_turns_to_face_the_photo_camera():
    from engine.avatar.shell import edge_ring, face_the_camera
    from engine.render.gaussians import Gaussians
    mask = torch.zeros(20, 20, dtype=torch.bool)
    mask[5:15, 5:15] = True
    mask[15:, 6:14] = True                                                   # a neck running out of the frame
    ring = edge_ring(mask, 2)
    assert not bool(ring[9, 9]) and bool(ring[5, 9]) and bool(ring[6, 9]) and not bool(ring[7, 9])
    assert not bool(ring[19, 10])                                            # the frame's edge is no edge
    pixel = torch.tensor([[9, 5], [9, 9], [9, 6], [9, 5]])
    which = torch.tensor([True, True, True, False])                          # the last is not a front surfel
    q = torch.nn.functional.normalize(torch.tensor([[0.9, 0.3, 0.2, 0.1]]), dim=1).repeat(4, 1)
    s = torch.tensor([[0.3, 0.1, 0.03]]).repeat(4, 1)
    g = Gaussians(torch.zeros(4, 3), q.clone(), s.clone(), torch.ones(4), torch.zeros(4, 1, 3))
    turned = face_the_camera(g, pixel, which, mask)
    assert turned.tolist() == [True, False, True, False]
    torch.testing.assert_close(g.quats[turned], torch.tensor([[1.0, 0, 0, 0]]).repeat(2, 1))
    torch.testing.assert_close(g.scales[turned], torch.tensor([[0.1, 0.1, 0.03]]).repeat(2, 1))
    torch.testing.assert_close(g.quats[~turned], q[~turned])
    torch.testing.assert_close(g.scales[~turned], s[~turned])


def test_the_halo_ring_is_culled_once_a_camera_comes_round_to_its_own_side():
    """A disc's outward normals point out of it; a halo surfel on its right edge (outward +x) is drawn from the
    photo camera, from 50 degrees round to the right and from anywhere on the left, and dropped by the facing
    test from 70 degrees round to the right on, where it lay edge-on across the side of the head."""
    from engine.avatar.shell import HALO_SEEN, halo_normals, outward
    from engine.render.camera import orbit
    from engine.render.splat import facing
    yy, xx = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    out = outward((xx - 32) ** 2 + (yy - 32) ** 2 <= 20 ** 2)
    torch.testing.assert_close(out[32, 51], torch.tensor([1.0, 0.0]), atol=0.05, rtol=0)
    torch.testing.assert_close(out[13, 32], torch.tensor([0.0, -1.0]), atol=0.05, rtol=0)
    n = halo_normals(out[32, 51][None])
    centre = torch.tensor([[0.0, 0.0, 2.5]])
    seen = {a: bool(facing(n, centre, orbit(centre[0], 2.5, a))[0]) for a in (-90, -60, 0, 50, 70, 90)}
    assert HALO_SEEN == 60.0
    assert seen == {-90: True, -60: True, 0: True, 50: True, 70: False, 90: False}, seen
