"""distill/losses.py against independent references: hand computations, engine.render.metrics (float64 SSIM) and
scikit-image's structural_similarity; distill/view.py's projection against the renderer, and fit4d's lift."""
import math

import numpy as np
import pytest
import torch

from distill.fit4d import fill_gaps
from distill.losses import arap_loss, knn_graph, photometric_loss, ssim_map, trajectory_loss
from engine.render.metrics import ssim as ssim_reference

pytestmark = pytest.mark.usefixtures("one_thread")


def test_l1_and_psnr_inside_a_mask_by_hand():
    pred = torch.zeros(1, 16, 16, 3)
    target = torch.zeros(1, 16, 16, 3)
    target[0, 0, 0] = 0.5                       # inside the mask
    target[0, 3, 3] = 1.0                       # outside
    mask = torch.zeros(1, 16, 16, dtype=torch.bool)
    mask[0, :2, :2] = True
    out = photometric_loss(pred, target, mask)
    assert float(out["loss_l1"]) == pytest.approx(0.5 / 4)                  # one of 4 pixels off by 0.5
    assert float(out["psnr"]) == pytest.approx(-10 * math.log10(0.25 / 4), rel=1e-5)


def test_ssim_matches_engine_metrics_and_skimage():
    from skimage.metrics import structural_similarity
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 24, 20, 3, generator=g)
    b = (a + 0.1 * torch.randn(2, 24, 20, 3, generator=g)).clamp(0, 1)
    ours = ssim_map(a, b)                                                     # [2, 24, 20]
    for i in range(2):
        assert float(ours[i].mean()) == pytest.approx(ssim_reference(a[i], b[i]), abs=1e-5)
        # skimage with the Gaussian window of Wang et al.: compare on the valid (unpadded) interior
        _, full = structural_similarity(a[i].numpy(), b[i].numpy(), channel_axis=2, gaussian_weights=True,
                                        sigma=1.5, use_sample_covariance=False, data_range=1.0, full=True)
        assert np.abs(ours[i, 5:-5, 5:-5].numpy() - full.mean(-1)[5:-5, 5:-5]).max() < 1e-4
    assert float(photometric_loss(a, a)["loss_ssim"]) == pytest.approx(0.0, abs=1e-6)


def test_images_smaller_than_the_ssim_window_are_refused():
    with pytest.raises(ValueError, match="pred"):
        photometric_loss(torch.zeros(1, 8, 8, 3), torch.zeros(1, 8, 8, 3))


def test_trajectory_loss_by_hand_counts_only_valid_terms():
    pred = torch.zeros(1, 2, 3, 2)
    tracks = torch.zeros(1, 2, 3, 2)
    tracks[0, 0, 0] = torch.tensor([3.0, 4.0])        # 25 px^2, valid
    tracks[0, 1, 2] = torch.tensor([100.0, 0.0])      # invalid: ignored
    valid = torch.ones(1, 2, 3, dtype=torch.bool)
    valid[0, 1, 2] = False
    out = trajectory_loss(pred, tracks, valid, px_scale=2.0)
    assert float(out["loss_traj"]) == pytest.approx(25.0 / 5 / 4)             # 5 valid terms, unit 2 px
    assert float(out["traj_px"]) == pytest.approx(math.sqrt(5.0))


def test_arap_is_zero_for_rigid_motion_and_matches_a_hand_count():
    g = torch.Generator().manual_seed(1)
    rest = torch.randn(50, 3, generator=g)
    nbr = knn_graph(rest, 4)
    # rigid: rotate and translate every frame -> every distance is preserved
    c, s = math.cos(0.3), math.sin(0.3)
    R = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    frames = torch.stack([rest, rest @ R.T + 1.0, (rest @ R.T) @ R.T - 2.0])[None]
    assert float(arap_loss(frames, nbr)["loss_arap"]) < 1e-10
    # uniform scaling by 2 between two frames: each distance d grows by d -> mean of d^2 over all pairs
    frames = torch.stack([rest, 2 * rest])[None]
    d = (rest[:, None] - rest[nbr]).norm(dim=-1)
    assert float(arap_loss(frames, nbr)["loss_arap"]) == pytest.approx(float((d ** 2).mean()), rel=1e-5)
    # relative to the rest pose, every pair has strain 1 -> exactly 1, whatever the scale of the points
    assert float(arap_loss(frames, nbr, rest)["loss_arap"]) == pytest.approx(1.0, rel=1e-5)
    assert float(arap_loss(frames * 1e-3, nbr, rest * 1e-3)["loss_arap"]) == pytest.approx(1.0, rel=1e-4)


def test_knn_graph_excludes_self_and_finds_the_nearest():
    pts = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [3.0, 0, 0], [10.0, 0, 0]])
    assert knn_graph(pts, 1)[:, 0].tolist() == [1, 0, 1, 2]


def test_fill_gaps_interpolates_linearly_and_holds_the_ends():
    values = torch.tensor([[0.0], [9.0], [9.0], [3.0], [9.0], [6.0]])[:, :, None].expand(6, 1, 2).clone()
    valid = torch.tensor([False, True, False, True, False, True])[:, None]
    out = fill_gaps(values, valid)[:, 0, 0].tolist()
    assert out == pytest.approx([9.0, 9.0, 6.0, 3.0, 4.5, 6.0])
    never = fill_gaps(values, torch.zeros(6, 1, dtype=torch.bool))
    assert float(never.abs().max()) == 0.0
