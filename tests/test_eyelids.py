"""engine.avatar.eyelids on a drawn pair of eyes: a lid Gaussian follows the upper lid with full weight and lands
on the lower lid, the eye opening follows the eyeball alone, and nothing above the brow, below the eye, beside it
or behind the face moves in a blink."""
import math

import torch

from engine.avatar.eyelids import EYEBALLS, EYES_ARCS, eyelid_skinning, lid_partners
from engine.avatar.regions import EYES, FACE
from engine.avatar.skinning import blend_translations, skin_weights

F, Z = 100.0, 2.0                                   # focal length (pixels) and the face's depth
K = torch.tensor([[F, 0.0, 0.0], [0.0, F, 0.0], [0.0, 0.0, 1.0]])


def lift(px, z=Z):
    """pixels [M, 2] -> points [M, 3] at depth z, through K."""
    px = torch.as_tensor(px, dtype=torch.float32).reshape(-1, 2)
    return torch.cat([px * z / F, torch.full((len(px), 1), z)], 1)


def drawn_face():
    """Face-mesh pixels [478, 3] with two eyes 40 px wide (open 8 px up and 6 px down from y = 100, corners
    at y = 100) and brows at y = 80, and control particles: every eye vertex, an eyeball in each eye and a 20 px
    grid of face ones."""
    face = torch.zeros(478, 3)
    for x0, (upper, lower, brow) in zip((100.0, 180.0), EYES_ARCS):
        # right eye outer corner 33 is on the image's left, left eye outer corner 263 on its right
        xs = [x0 + 40.0 * i / 8 for i in range(9)] if x0 == 100.0 else [x0 + 40.0 - 40.0 * i / 8 for i in range(9)]
        for i, x in enumerate(xs):
            s = math.sin(math.pi * i / 8)
            face[upper[i], :2] = torch.tensor([x, 100.0 - 8.0 * s])
            face[lower[i], :2] = torch.tensor([x, 100.0 + 6.0 * s])
        for j, b in enumerate(brow):
            face[b, :2] = torch.tensor([x0 - 5.0 + 12.5 * j if x0 == 100.0 else x0 + 45.0 - 12.5 * j, 80.0])
    eye_ids = sorted({i for upper, lower, _ in EYES_ARCS for i in upper + lower})
    names = [f"face:{i}" for i in eye_ids]
    px = [face[i, :2].tolist() for i in eye_ids]
    regions = [EYES] * len(eye_ids)
    for name, x in zip(EYEBALLS, (120.0, 200.0)):
        names.append(name)
        px.append([x, 100.0])
        regions.append(FACE)
    for gy in range(60, 141, 20):
        for gx in range(80, 241, 20):
            names.append(f"face:{1000 + len(names)}")
            px.append([float(gx), float(gy)])
            regions.append(FACE)
    return face, lift(px), torch.tensor(regions), names


def blink(particles, names, back=0.3):
    """Particle motion [P, 3] of a closed blink: each upper-lid vertex onto its lower-lid partner, the eyeballs
    `back` further from the camera."""
    where = {n: i for i, n in enumerate(names)}
    out = torch.zeros_like(particles)
    for u, lo in lid_partners():
        out[where[u]] = particles[where[lo]] - particles[where[u]]
    for e in EYEBALLS:
        out[where[e], 2] = back
    return out


def test_the_lid_follows_the_upper_lid_fully_and_nothing_outside_the_lids_moves():
    face, particles, p_regions, names = drawn_face()
    probes = {"lash line": (120.0, 92.0), "lashes": (120.0, 95.0), "lashes above": (120.0, 90.0),
              "lid": (120.0, 88.0), "opening": (120.0, 100.0),
              "above the brow": (120.0, 76.0), "under the brow": (120.0, 83.0), "below the eye": (120.0, 109.0),
              "beside the eye": (94.0, 96.0), "behind": (120.0, 91.0)}
    means = torch.cat([lift(p, Z + (1.0 if k == "behind" else 0.0)) for k, p in probes.items()])
    regions = torch.tensor([EYES if k in ("opening", "lashes") else FACE for k in probes])
    is_front = torch.tensor([k != "behind" for k in probes])
    index, weight = skin_weights(means, particles, 4)
    moving = torch.tensor([names.index(u) for u, _ in lid_partners()])

    def on_lid(i, w):                                                      # weight on moving lid particles [M]
        return (w * torch.isin(i, moving)).sum(1)
    plain = dict(zip(probes, on_lid(index, weight).tolist()))
    assert plain["lid"] < 0.9 and plain["above the brow"] > 0.1 and plain["beside the eye"] > 0.1   # mixed

    new_index, new_weight = eyelid_skinning(face, K, means, regions, is_front, particles, p_regions, names,
                                            index, weight)
    torch.testing.assert_close(new_weight.sum(1), torch.ones(len(probes)))
    follows = dict(zip(probes, on_lid(new_index, new_weight).tolist()))
    # the lid is 14 px from contour to lower lid here; the lash band reaches 0.2 x 14 = 2.8 px above the contour
    assert abs(follows["lash line"] - 1.0) < 1e-5
    assert abs(follows["lashes above"] - 16.0 / 14.0) < 1e-5               # overtakes the contour: 2 px further
    assert abs(follows["lid"] - 16.8 / 14.0) < 1e-5                        # the lid proper moves as one with the
    #                                                                        band's top
    assert 0.0 < follows["under the brow"] < 0.1                           # the skin under the brow stretches
    for k in ("opening", "above the brow", "below the eye", "beside the eye", "behind"):
        assert follows[k] == 0.0, (k, follows[k])

    motion = blink(particles, names)
    moved = means + blend_translations(motion, new_index, new_weight)
    y = moved[:, 1] / moved[:, 2] * F                                      # pixel rows after the blink
    got = dict(zip(probes, y.tolist()))
    assert abs(got["lash line"] - 106.0) < 0.05                            # the lash line lands on the lower lid
    assert abs(got["lashes"] - 106.0) < 0.05                               # the lashes just below it too, no lower
    assert abs(got["lashes above"] - 106.0) < 0.05                         # and those standing above it
    assert abs(got["lid"] - 104.8) < 0.05                                  # the lid above them comes along
    shift = dict(zip(probes, (moved - means).unbind(0)))
    torch.testing.assert_close(shift["opening"], motion[names.index(EYEBALLS[0])])   # the eye goes back, alone
    for k in ("above the brow", "below the eye", "beside the eye", "behind"):
        assert float(shift[k].abs().max()) < 1e-6, k                       # nothing outside the lids bends


def test_rows_are_left_alone_without_eye_particles():
    face, particles, p_regions, names = drawn_face()
    keep = [i for i, n in enumerate(names) if n != "face:159"]
    particles, p_regions, names = particles[keep], p_regions[keep], [names[i] for i in keep]
    means = lift([(120.0, 91.0)])
    index, weight = skin_weights(means, particles, 4)
    out = eyelid_skinning(face, K, means, torch.tensor([FACE]), torch.tensor([True]), particles, p_regions,
                          names, index, weight)
    assert torch.equal(out[0], index) and torch.equal(out[1], weight)


def test_the_under_layer_behind_the_eye_takes_the_lid_colour():
    """Where the stretched lid thins out, what shows behind it is skin of the lid's colour, not the iris."""
    from engine.avatar.eyelids import cover_the_eyes
    from engine.render.gaussians import Gaussians, rgb_to_sh_dc, sh_dc_to_rgb
    face, _, _, _ = drawn_face()
    lid_px = [(112.0 + 2 * i, 86.0) for i in range(8)]                   # between the crease and the brow
    spots = {"lid": lid_px, "under the opening": [(120.0, 100.0)], "under the cheek": [(120.0, 125.0)],
             "back of the head": [(120.0, 100.0)]}
    px = [p for v in spots.values() for p in v]
    n = len(px)
    kind = [k for k, v in spots.items() for _ in v]
    rgb = torch.tensor([[0.8, 0.6, 0.5] if k == "lid" else [0.1, 0.05, 0.05] for k in kind])
    g = Gaussians(lift(px), torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), torch.full((n, 3), 0.01), torch.ones(n),
                  rgb_to_sh_dc(rgb)[:, None, :].contiguous())
    is_front = torch.tensor([k == "lid" for k in kind])
    under = torch.tensor([k.startswith("under") for k in kind])
    assert cover_the_eyes(face, K, g, torch.full((n,), FACE), is_front, under) == 1
    out = dict(zip(kind, sh_dc_to_rgb(g.sh[:, 0])))
    torch.testing.assert_close(out["under the opening"], torch.tensor([0.8, 0.6, 0.5]))
    torch.testing.assert_close(out["under the cheek"], torch.tensor([0.1, 0.05, 0.05]))
    torch.testing.assert_close(out["back of the head"], torch.tensor([0.1, 0.05, 0.05]))
