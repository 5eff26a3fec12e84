"""distill/tracks.py against motion known independently of the tracker: a texture moved by cv2.warpAffine (where a
point goes is the affine map itself), an occluder pasted over one frame, and the procedural teacher's photo warp
(PhotoRig moves each slot's mesh vertex by exactly its displacement, so the true pixel of a slot is its rest pixel
plus the displacement in pixels). Bad input is named."""

import cv2
import numpy as np
import pytest
import torch

from distill.tracks import CONFIG_PATH, TrackConfig, track
from engine.config import from_dict, load_config
from engine.avatar.particles import canonical_names

pytestmark = pytest.mark.usefixtures("one_thread")
S = 256
BODY = [n for n in canonical_names() if not n.startswith("face:")]      # 64 pose and hand slots: LK only


def texture(seed: int = 0) -> np.ndarray:
    """A smooth random colour texture [S, S, 3] uint8: structure at every pixel, so every point is trackable."""
    noise = cv2.GaussianBlur(np.random.default_rng(seed).random((S, S, 3)).astype(np.float32), (0, 0), 2.0)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return (noise * 255 + 0.5).astype(np.uint8)


def grid(lo: float, hi: float) -> np.ndarray:
    """8 x 8 points [64, 2], pixel centres at +0.5."""
    xs = np.linspace(lo, hi, 8)
    x, y = np.meshgrid(xs, xs)
    return np.stack([x.ravel(), y.ravel()], 1) + 0.5


def affine(t: int, deg: float, scale: float) -> np.ndarray:
    """Frame t's map [2, 3]: a sub-pixel shift (0.37, -0.23) px per frame, a rotation and a scaling about the centre."""
    M = cv2.getRotationMatrix2D((S / 2, S / 2), deg * t, scale ** t)
    M[:, 2] += (0.37 * t, -0.23 * t)
    return M


def clip(image: np.ndarray, maps: list[np.ndarray]) -> np.ndarray:
    return np.stack([cv2.warpAffine(image, M, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
                     for M in maps])


def moved(points: np.ndarray, maps: list[np.ndarray]) -> np.ndarray:
    """Where warpAffine takes points [P, 2] (centres at +0.5; OpenCV's at integers) in each frame -> [T, P, 2]."""
    return np.stack([(points - 0.5) @ M[:, :2].T + M[:, 2] + 0.5 for M in maps])


@pytest.mark.parametrize("deg, scale, tol_median, tol_max", [(0.0, 1.0, 0.03, 0.1), (0.1, 1.001, 0.08, 0.4)])
def test_known_motion_over_20_chained_frames(deg, scale, tol_median, tol_max):
    ref = texture()
    maps = [affine(t, deg, scale) for t in range(1, 21)]
    points = grid(48, 208)
    out = track(ref, clip(ref, maps), torch.from_numpy(points), BODY)
    assert out.points.shape == (20, 64, 2) and out.points.dtype == torch.float32
    assert out.valid.shape == (20, 64) and out.valid.dtype == torch.bool and out.names == BODY
    assert bool(out.valid.all())
    err = np.linalg.norm(out.points.numpy() - moved(points, maps), axis=-1)       # [T, P]
    print(f"rotation {deg} deg/frame, scale {scale}/frame: median {np.median(err):.3f} px, "
          f"last frame median {np.median(err[-1]):.3f} max {err[-1].max():.3f}, max {err.max():.3f}")
    assert np.median(err) < tol_median and err.max() < tol_max, (np.median(err), err.max())


def test_an_occluded_region_is_invalid_there_and_found_again():
    """Frame k has an 80 x 80 square of noise: points under it are invalid there (forward-backward and patch
    checks), points whose window does not touch it stay valid and exact, all are re-found and exact after k."""
    ref, k, box = texture(1), 6, slice(80, 160)
    maps = [affine(t, 0.0, 1.0) for t in range(1, 13)]
    frames = clip(ref, maps)
    frames[k, box, box] = np.random.default_rng(2).integers(0, 256, (80, 80, 3), dtype=np.uint8)
    points = grid(24, 232)
    truth = moved(points, maps)
    depth = np.minimum(truth[k] - 80, 160 - truth[k]).min(1)              # px inside the square (< 0: outside)
    inside, apart = depth >= 4, depth < -(TrackConfig().win_size // 2 + 2)
    edge = ~inside & ~apart                                                # the window overlaps the square
    assert inside.sum() >= 6 and apart.sum() >= 40 and edge.sum() >= 3
    out = track(ref, frames, points, BODY)
    valid, err = out.valid.numpy(), np.linalg.norm(out.points.numpy() - truth, axis=-1)
    print(f"occluded frame: {int(inside.sum())} points under the noise, valid {int(valid[k, inside].sum())}; "
          f"{int(edge.sum())} on its edge, valid {int(valid[k, edge].sum())}, error there up to "
          f"{err[k, edge & valid[k]].max(initial=0):.2f} px; after it, max error {err[k + 1:].max():.3f} px")
    assert not valid[k, inside].any(), valid[k, inside]
    assert (out.points[k, inside] == out.points[k - 1, inside]).all()      # a lost point holds its last position
    assert valid[:, apart].all() and err[:, apart].max() < 0.1, err[:, apart].max()
    assert (err[k, edge & valid[k]] < 2.0).all(), err[k, edge]              # near the edge: valid only if close
    assert valid[k + 1:].all() and err[k + 1:].max() < 0.1, err[k + 1:].max()   # re-found (and re-anchored)


@pytest.fixture(scope="module")
def talking(photo):
    """The procedural teacher on the astronaut (256 px): the jaw opening in steps, from shut to wide open and back.
    -> (rig, frames [20, 256, 256, 3], names [P], rest [P, 2], truth [20, P, 2] pixels, jaw [P] bool: the slots
    that the full opening moves by more than a pixel, lips and chin)."""
    pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
    from distill.teachers.procedural import ProceduralTeacher
    from engine.motion.procedural import ProceduralConfig, ProceduralMotion
    rig = ProceduralTeacher(max_side=S).prepare(photo)
    quiet = ProceduralConfig(sway_deg=0.0, nod_deg=0.0, breath=0.0, gesture=0.0, blink_every_s=1e12)
    wide = ProceduralMotion(rig.rest_units, rig.present, quiet)(torch.zeros(6, 80), torch.ones(6))[-1]   # [K_c, 3]
    steps = torch.tensor([0, .2, .4, .6, .8, 1, 1, 1, .8, .6, .4, .2, 0, 0, .5, 1, .5, 0, 0, .3])
    motion = steps[:, None, None] * wide                                               # [T, K_c, 3] face units
    names = [canonical_names()[k] for k in rig.keep]                                   # the slots in the mesh
    rest = rig.rest_units[rig.keep, :2] * rig.unit                                     # [P, 2] pixels
    truth = rest + motion[:, rig.keep, :2] * rig.unit
    jaw = wide[rig.keep, :2].norm(dim=1) * rig.unit > 1.0
    return rig, rig.render_clip(motion), names, rest, truth, jaw


def test_lips_and_chin_on_the_procedural_teacher(talking):
    rig, frames, names, rest, truth, jaw = talking
    out = track(rig.image, frames, rest, names)
    err = (out.points - truth).norm(dim=-1)                                             # [T, P]
    at = {n: i for i, n in enumerate(names)}
    eyes = torch.tensor([n in {f"face:{i}" for i in (33, 133, 159, 145, 263, 362, 386, 374)} for n in names])
    lk_only = track(rig.image, frames, rest, names, TrackConfig(use_landmarks=False))
    lk_err = (lk_only.points - truth).norm(dim=-1)
    print(f"jaw slots {int(jaw.sum())}/{len(names)}, opening up to {float((truth - rest).norm(dim=-1).max()):.1f} px: "
          f"fused median {float(err[:, jaw].median()):.2f} px, p90 {float(err[:, jaw].quantile(0.9)):.2f}; "
          f"LK alone valid {float(lk_only.valid[:, jaw].float().mean()):.2f} of jaw points, "
          f"median there {float(lk_err[:, jaw][lk_only.valid[:, jaw]].median()):.2f} px; "
          f"still eye corners and lids {float(err[:, eyes].median()):.3f} px")
    assert bool(out.valid.all())                                                        # the mesh re-finds them
    assert float(err[:, jaw].median()) < 1.5
    assert float(err[:, eyes].median()) < 0.1                                           # no landmark jitter there
    assert float(lk_only.valid[:, jaw].float().mean()) < 0.9                            # LK alone loses the lips
    for slot in ("face:14", "face:17"):                                                 # the lower lip's centre
        drop = (out.points[:, at[slot], 1] - rest[at[slot], 1]).numpy()
        true = (truth[:, at[slot], 1] - rest[at[slot], 1]).numpy()
        assert np.corrcoef(drop, true)[0, 1] > 0.9 and abs(drop.max() - true.max()) < 2.0, (slot, drop, true)


def test_config_file_and_bad_inputs():
    assert load_config(TrackConfig, CONFIG_PATH) == TrackConfig() == TrackConfig.from_yaml()
    ref, points = texture()[:64, :64].copy(), grid(8, 56)[:2]
    frames, names = np.stack([ref, ref]), BODY[:2]
    bad = [("reference", dict(reference=ref.astype(np.float32))), ("reference", dict(reference=ref[..., 0])),
           ("frames", dict(frames=frames[0])), ("frames", dict(frames=frames[:, :32])),
           ("frames", dict(frames=frames[:0])), ("points", dict(points=np.zeros((2, 3)))),
           ("points", dict(points=np.array([[1.0, np.nan], [2.0, 2.0]]))), ("names", dict(names=BODY[:3])),
           ("names", dict(names=["pose:11", "nose"])), ("cfg", dict(cfg=TrackConfig(fb_threshold_px=0.0)))]
    for arg, change in bad:
        kwargs = dict(reference=ref, frames=frames, points=points, names=names) | change
        with pytest.raises(ValueError, match=f"^{arg}"):
            track(**kwargs)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['window'\].*valid keys"):
        from_dict(TrackConfig, {"window": 3})
