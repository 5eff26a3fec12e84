"""Procedural motion (engine.motion.procedural) on the astronaut's own landmarks: chunked == offline, the jaw follows
loudness with at most one frame of lag, silence is idle motion (no jaw, but blinks and breathing), barge-in
closes the mouth on the next frame."""

import math

import pytest
import torch

pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
from engine.avatar.eyelids import EYEBALLS, lid_partners  # noqa: E402
from engine.avatar.particles import canonical_names  # noqa: E402
from engine.motion.procedural import ProceduralConfig, ProceduralMotion  # noqa: E402
from face_rest import astronaut_rest  # noqa: E402



@pytest.fixture(scope="module")
def rest():
    return astronaut_rest()


def speech(T=200, seed=0):
    """Syllable-like loudness bursts (4 per second) with a random mel spectrum."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(T, dtype=torch.float32)
    rms = 0.08 * torch.sin(math.pi * t / 6.25).clamp(min=0) ** 2 + 1e-4
    return torch.randn(T, 80, generator=g), rms


def test_chunked_equals_offline(rest):
    mel, rms = speech()
    offline = ProceduralMotion(rest[0], rest[1], seed=3)(mel, rms)
    live = ProceduralMotion(rest[0], rest[1], seed=3)
    parts, i = [], 0
    for n in (1, 2, 7, 0, 25, 165):
        parts.append(live.push(mel[i:i + n], rms[i:i + n]))
        i += n
    assert torch.equal(torch.cat(parts), offline)
    assert offline.shape == (200, len(canonical_names()), 3)
    assert float(offline[:, ~rest[1]].abs().max()) == 0.0                # absent slots never move


def test_jaw_follows_loudness_within_a_frame(rest):
    mel, rms = speech()
    motion = ProceduralMotion(rest[0], rest[1], ProceduralConfig(sway_deg=0.0, nod_deg=0.0), seed=1)(mel, rms)
    where = rest[2]
    opening = motion[:, where["face:14"], 1] - motion[:, where["face:13"], 1]   # lower lip down minus upper lip
    loud = (20 * torch.log10(rms)).clamp(-50, -18)
    def corr(a, b):
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / (a.norm() * b.norm()))
    by_lag = {lag: corr(opening[lag:], loud[:len(loud) - lag]) for lag in range(0, 4)}
    best = max(by_lag, key=by_lag.get)
    assert best <= 1 and by_lag[best] > 0.9, by_lag
    assert float(opening.max()) > 0.15                                    # face units: a visibly open mouth


def test_silence_is_idle_and_interrupt_closes_the_mouth(rest):
    T = 25 * 20
    pm = ProceduralMotion(rest[0], rest[1], seed=0)
    quiet = pm(torch.zeros(T, 80), torch.zeros(T))
    where = rest[2]
    assert float((quiet[:, where["face:14"], 1] - quiet[:, where["face:13"], 1]).abs().max()) < 0.02
    lid = quiet[:, where["face:159"], 1] - quiet[:, where["face:145"], 1]   # upper lid drop minus lower lid
    blinks = int(((lid[1:] > 0.05) & (lid[:-1] <= 0.05)).sum())
    assert 2 <= blinks <= 12, blinks                                      # ~ one per 4 s over 20 s
    assert float(quiet.abs().max()) > 0.005                               # sway and breathing: never frozen
    mel, rms = speech(T=40)
    pm = ProceduralMotion(rest[0], rest[1], seed=0)
    loud = pm.push(mel[:4], rms[:4])                                      # the first syllable peaks at frame 3
    assert float(loud[-1, where["face:14"], 1]) > 0.1
    pm.interrupt()
    after = pm.push(torch.zeros(1, 80), torch.zeros(1))
    assert float(after[0, where["face:14"], 1] - after[0, where["face:13"], 1]) < 0.01


def test_a_blink_puts_every_upper_lid_vertex_on_its_lower_lid_partner(rest):
    """Closed means closed: at the blink's peak the upper lid lies on the lower lid (the old rig dropped the lid
    points by 1.8 x their height above the eye's mean line, which stops short of the lower lid)."""
    T = 25 * 20
    cfg = ProceduralConfig(sway_deg=0.0, nod_deg=0.0, breath=0.0, saccade=0.0)   # the lids alone
    quiet = ProceduralMotion(rest[0], rest[1], cfg, seed=0)(torch.zeros(T, 80), torch.zeros(T))
    where, pos = rest[2], rest[0] + quiet                                 # [T, K_c, 3] face units
    pairs = [(where[u], where[lo]) for u, lo in lid_partners()]
    assert len(pairs) == 14                                               # 7 per eye, corners excluded
    gap = torch.stack([(pos[:, u] - pos[:, lo]).norm(dim=-1) for u, lo in pairs], 1)   # [T, 14]
    open_gap = torch.stack([(rest[0][u] - rest[0][lo]).norm() for u, lo in pairs])
    assert float(open_gap[[1, 2, 3, 8, 9, 10]].min()) > 0.02              # the photo's eyes are open
    closed = gap.max(1).values < 1e-5
    assert int(closed.sum()) >= 4                                         # two frames per blink, several blinks
    assert bool((gap[~closed].max(1).values > 0.3 * open_gap.max()).any())   # and open in between
    corners = [where[f"face:{i}"] for i in (33, 133, 263, 362)]
    assert float(quiet[:, corners].abs().max()) < 1e-6                    # the corners stay
    balls = [where[e] for e in EYEBALLS]                                  # and the eyeballs go back, behind the lid
    torch.testing.assert_close(quiet[closed][:, balls], torch.tensor([0.0, 0.0, cfg.eye_back]).expand(
        int(closed.sum()), 2, 3), atol=1e-6, rtol=0)


def test_bad_shapes_are_named(rest):
    with pytest.raises(ValueError, match="rest/present"):
        ProceduralMotion(rest[0][:10], rest[1][:10])
    with pytest.raises(ValueError, match="mel/rms"):
        ProceduralMotion(rest[0], rest[1]).push(torch.zeros(3, 80), torch.zeros(2))


def test_a_closed_rest_mouth_opens_as_one_lower_lip(rest):
    """The avatar's rest mouth is closed (engine.avatar.mouth.closing_shift): both inner lips lie on one line.
    The jaw must still carry the whole lower lip, inner edge included, and leave the upper lip."""
    from engine.avatar.mouth import LOWER_INNER, UPPER_INNER

    pos, present, where = rest[0].clone(), rest[1], rest[2]
    line = (pos[where["face:13"], 1] + pos[where["face:14"], 1]) / 2
    for i in set(UPPER_INNER) | set(LOWER_INNER):
        pos[where[f"face:{i}"], 1] = line                                 # shut: the photo's lip gap closed
    mel, rms = speech()
    motion = ProceduralMotion(pos, present, ProceduralConfig(sway_deg=0.0, nod_deg=0.0), seed=1)(mel, rms)
    drop = lambda i: motion[:, where[f"face:{i}"], 1]                     # noqa: E731
    loud = int(rms.argmax())
    assert float(drop(14)[loud] - drop(13)[loud]) > 0.15                  # the inner lips part
    assert float(drop(14)[loud]) == pytest.approx(float(drop(17)[loud]), rel=0.1)   # inner and outer together
    assert float(drop(13)[loud]) <= 0.0                                   # the upper lip does not come down


def test_saccades_jump_and_hold_the_gaze(rest):
    """The eyeballs (and nothing else, with the head, lids and breath still) jump to a new point now and then,
    within the configured reach, and hold it between jumps."""
    T = 25 * 30
    cfg = ProceduralConfig(sway_deg=0.0, nod_deg=0.0, breath=0.0, blink_every_s=1e9, saccade=0.02)
    quiet = ProceduralMotion(rest[0], rest[1], cfg, seed=4)(torch.zeros(T, 80), torch.zeros(T))
    balls = [rest[2][e] for e in EYEBALLS]
    gaze = quiet[:, balls[0], :2]                                          # [T, 2]
    torch.testing.assert_close(quiet[:, balls[1], :2], gaze, atol=1e-6, rtol=0)   # both eyes together
    others = torch.ones(quiet.shape[1], dtype=torch.bool)
    others[balls] = False
    assert float(quiet[:, others].abs().max()) < 1e-6
    jumps = int(((gaze[1:] - gaze[:-1]).abs() > 1e-5).any(1).sum())
    assert 10 <= jumps <= 40                                              # ~1 per 1.5 s over 30 s
    assert float(gaze[:, 0].abs().max()) <= 0.02 and float(gaze[:, 1].abs().max()) <= 0.01


def _face_avatar(particles: torch.Tensor, names: list[str]):
    """An avatar whose Gaussians sit on its face particles [K, 3] (world), each skinned to its own particle."""
    from engine.avatar.bundle import Avatar, PhotoCamera
    from engine.render.camera import intrinsics, look_at
    from engine.render.gaussians import Gaussians
    K = len(names)
    g = Gaussians(particles.clone(), torch.tensor([[1.0, 0, 0, 0]]).repeat(K, 1), torch.full((K, 3), 0.01),
                  torch.ones(K), torch.zeros(K, 1, 3))
    cam = PhotoCamera(intrinsics(64, 64), look_at(torch.zeros(3), torch.tensor([0.0, 0.0, 2.5])), 64, 64)
    return Avatar(g, torch.zeros(K, dtype=torch.long), particles.clone(), torch.zeros(K, dtype=torch.long), names,
                  torch.arange(K)[:, None], torch.ones(K, 1), cam, {})


def test_a_tilted_head_moves_its_face_along_its_own_axes(rest):
    """The astronaut's face, and the same face turned 30 degrees in the photo: the same speech moves the turned
    face by the same world displacements turned 30 degrees (before, its jaw dropped straight down the photo)."""
    from engine.view import AvatarView
    names = [n for n, shown in zip(canonical_names(), rest[1].tolist()) if shown]
    upright = rest[0][rest[1]] * 0.1 + torch.tensor([0.0, 0.0, 2.5])     # 0.1 world units per face unit
    a = math.radians(30.0)
    turn = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    tilted = upright.clone()
    tilted[:, :2] = (upright[:, :2] - 0.3) @ turn.T + 0.3                  # about a point off the face
    mel, rms = speech()
    worlds = []
    for particles in (upright, tilted):
        avatar = _face_avatar(particles, names)
        motion = ProceduralMotion.for_avatar(avatar, seed=2)(mel, rms)       # [T, K_c, 3] canonical
        worlds.append(AvatarView.from_photo(avatar, 64, 64).to_world(motion))
    jaw = names.index("face:14")                                          # the lower lip
    assert float(worlds[0][:, jaw, 1].max()) > 0.01                        # the lower lip drops
    torch.testing.assert_close(worlds[1][..., :2], worlds[0][..., :2] @ turn.T, atol=1e-5, rtol=0)
    torch.testing.assert_close(worlds[1][..., 2], worlds[0][..., 2], atol=1e-5, rtol=0)
