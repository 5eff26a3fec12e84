"""engine.avatar.eyelids on a drawn pair of eyes: the lash line follows the upper lid with full weight and lands
on the lower lid, the eye opening follows the eyeball alone, the lid sheet hidden above the opening slides down
exactly over it, and nothing else (the fold above the lashes, the brow, below the eye, beside it, behind the face)
moves in a blink."""
import math

import numpy as np
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


def turn(px, deg, centre=(0.0, 0.0)):
    """Pixels [M, 2] turned by deg (clockwise on the image, y down) about centre (by default the principal point:
    lifted through K, that is the face turned about the camera's axis)."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    q = torch.as_tensor(px, dtype=torch.float32).reshape(-1, 2) - torch.tensor(centre)
    return torch.stack([c * q[:, 0] - s * q[:, 1], s * q[:, 0] + c * q[:, 1]], 1) + torch.tensor(centre)


def landed(face, particles, p_regions, names, probes):
    """Where each probe pixel [M, 2] (a front face Gaussian at depth Z) is after a closed blink -> [M, 2]."""
    means = lift(probes)
    n = len(means)
    index, weight = skin_weights(means, particles, 4)
    index, weight = eyelid_skinning(face, K, means, torch.full((n,), FACE), torch.ones(n, dtype=torch.bool),
                                    particles, p_regions, names, index, weight)
    moved = means + blend_translations(blink(particles, names), index, weight)
    return moved[:, :2] / moved[:, 2:] * F


def test_a_tilted_head_blinks_as_a_level_one_does():
    """The drawn face and its probes turned 30 degrees (a tilted head): every probe lands where the level face's
    does, turned the same way. Columns taken straight down the photo would cut the tilted eye on a slant: the
    lash line would land beside the lower lid, the lid would stop short."""
    face, particles, p_regions, names = drawn_face()
    probes = torch.tensor([(x, y) for x in (106.0, 113.0, 120.0, 127.0, 134.0, 186.0, 200.0, 214.0)
                           for y in (83.0, 88.0, 90.0, 92.0, 95.0, 100.0, 104.0, 109.0)])
    level = landed(face, particles, p_regions, names, probes)
    for deg in (30.0, -30.0):
        tilted_face = face.clone()
        tilted_face[:, :2] = turn(face[:, :2], deg)
        px = particles[:, :2] / particles[:, 2:] * F
        tilted = landed(tilted_face, lift(turn(px, deg)), p_regions, names, turn(probes, deg))
        torch.testing.assert_close(turn(tilted, -deg), level, atol=0.05, rtol=0.0)


def test_an_eye_with_a_lid_sheet_keeps_its_fold_and_moves_only_the_lash_line():
    """With a sheet for the right eye (its fold was dark), the fold above the lash band stays where it is: the
    sheet comes down from under it. The lash line still lands on the lower lid."""
    face, particles, p_regions, names = drawn_face()
    probes = {"lash line": (120.0, 92.0), "lashes above": (120.0, 90.0), "lid": (120.0, 88.0),
              "under the brow": (120.0, 83.0), "left eye's lid": (200.0, 88.0), "sheet": (120.0, 85.0)}
    means = torch.cat([lift(p, Z + (0.1 if k == "sheet" else 0.0)) for k, p in probes.items()])
    regions = torch.tensor([EYES if k == "sheet" else FACE for k in probes])
    is_front = torch.tensor([k != "sheet" for k in probes])
    sheet_eye = torch.tensor([0 if k == "sheet" else -1 for k in probes])
    index, weight = skin_weights(means, particles, 4)
    index, weight = eyelid_skinning(face, K, means, regions, is_front, particles, p_regions, names, index, weight,
                                    sheet_eye=sheet_eye)
    moved = means + blend_translations(blink(particles, names), index, weight)
    y = dict(zip(probes, (moved[:, 1] / moved[:, 2] * F).tolist()))
    assert abs(y["lash line"] - 106.0) < 0.05 and abs(y["lashes above"] - 106.0) < 0.05
    assert abs(y["lid"] - 88.0) < 1e-4 and abs(y["under the brow"] - 83.0) < 1e-4   # the right fold stays
    assert abs(y["left eye's lid"] - 104.8) < 0.05                         # the left eye has no sheet: its fold slides
    assert abs(y["sheet"] - (85.0 + 14.0 * Z / (Z + 0.1))) < 0.05          # the sheet rides the lid (14 px at depth Z)


def test_rows_are_left_alone_without_eye_particles():
    face, particles, p_regions, names = drawn_face()
    keep = [i for i, n in enumerate(names) if n != "face:159"]
    particles, p_regions, names = particles[keep], p_regions[keep], [names[i] for i in keep]
    means = lift([(120.0, 91.0)])
    index, weight = skin_weights(means, particles, 4)
    out = eyelid_skinning(face, K, means, torch.tensor([FACE]), torch.tensor([True]), particles, p_regions,
                          names, index, weight)
    assert torch.equal(out[0], index) and torch.equal(out[1], weight)


def ring_of_skin(centre=(120.0, 99.0), lit=(0.8, 0.6, 0.5), dark=(0.2, 0.1, 0.1)):
    """Face-skin samples around an eye 40 px long, most of them in shadow (a deep-set eye): 8 lit ones 28 px from
    its centre, and 12 dark ones (the fold's shadow, lashes, brow), a little different each, at 20 px.
    -> pixels [20, 2], colours [20, 3]."""
    angles = [2 * math.pi * i / 8 for i in range(8)] + [2 * math.pi * (i + 0.5) / 12 for i in range(12)]
    radii = [28.0] * 8 + [20.0] * 12
    px = torch.tensor([[centre[0] + r * math.cos(a), centre[1] + r * math.sin(a)] for a, r in zip(angles, radii)])
    rgb = torch.tensor([lit] * 8 + [[v * (1 + 0.02 * i) for v in dark] for i in range(12)])
    return px, rgb


def eyes_photo(fold_rgb, H=160, W=260, deg=0.0):
    """The drawn eyes' photo: lit skin around each eye (22-32 px from its centre) and its fold (rows 83-89 above
    it) in fold_rgb; deg: all of it turned as `turn` does. -> image [H, W, 3], skin [H, W] bool."""
    image, skin = torch.zeros(H, W, 3), torch.zeros(H, W, dtype=torch.bool)
    yy, xx = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    xx, yy = turn(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1), -deg).T.reshape(2, H, W)   # drawn level
    for cx in (120.0, 200.0):
        ring = ((xx - cx) ** 2 + (yy - 99.0) ** 2).sqrt()
        lit = (ring >= 22) & (ring <= 32)
        image[lit], skin[lit] = torch.tensor([0.8, 0.6, 0.5]), True
        fold = ((xx - cx).abs() < 14) & (yy > 83) & (yy < 89)
        image[fold], skin[fold] = torch.tensor(fold_rgb), True
    return image, skin


def test_a_light_fold_gets_no_lid_sheet():
    """A fold near the skin's own tone (luminance 0.49, the skin 0.65: over DARK_FOLD x) slides down as the
    lid; no sheet is made."""
    from engine.avatar.eyelids import lid_sheets
    face, _, _, _ = drawn_face()
    image, skin = eyes_photo(fold_rgb=(0.6, 0.45, 0.4))
    g, _, _ = lid_sheets(face, image, skin, torch.zeros(image.shape[:2]), K, Z)
    assert len(g) == 0


def test_a_dark_folds_lid_sheet_hides_above_the_eye_and_a_blink_lays_it_exactly_over_the_opening():
    from engine.avatar.eyelids import LASH, LID_SHADE, SHEET_BEHIND, lid_sheets
    face, particles, p_regions, names = drawn_face()
    image, skin = eyes_photo(fold_rgb=(0.25, 0.15, 0.12))                  # eye make-up on the folds
    front = torch.zeros(image.shape[:2])                                   # a flat face at depth Z
    g, _, eye = lid_sheets(face, image, skin, front, K, Z)
    assert len(g) > 0 and set(eye.tolist()) == {0, 1}
    # the colour: the skin around the eye (not the fold's dark), shaded down to the lash line: LID_SHADE x at
    # the lower lid
    from engine.render.gaussians import sh_dc_to_rgb
    skin = torch.tensor([0.8, 0.6, 0.5])
    shade = sh_dc_to_rgb(g.sh[:, 0]) / skin                                # [M, 3], each row one factor
    torch.testing.assert_close(shade, shade[:, :1].expand(-1, 3))
    assert abs(float(shade.max()) - 1.0) < 1e-5 and abs(float(shade.min()) - LID_SHADE) < 0.02
    # at rest: behind the surface by SHEET_BEHIND eye widths (33-263: 120 px here), behind the lash strip and fold
    torch.testing.assert_close(g.means[:, 2], torch.full((len(g),), Z + SHEET_BEHIND * 120.0 * Z / F))
    x, y = (g.means[:, :2] / g.means[:, 2:] * F).unbind(1)
    def contour(arc):                                                      # row of the drawn arcs at x
        pts = torch.cat([face[list(a), :2] for a in arc])
        order = pts[:, 0].argsort()
        return torch.from_numpy(np.interp(x.numpy(), pts[order, 0].numpy(), pts[order, 1].numpy())).float()
    y_up, y_low = contour([u for u, _, _ in EYES_ARCS]), contour([lo for _, lo, _ in EYES_ARCS])
    lash = y_up + LASH * (y_low - y_up)                                    # the lash strip covers the contour to here
    assert bool((y <= lash + 0.5).all())                                   # (row centres: within half a pixel)
    # a blink: each sheet Gaussian rides its eye's upper lid with all its weight, down onto its place over the
    # opening, so the column at x = 120.5 is covered from the lash band's top (89.28) to the lower lid (105.95)
    index, weight = skin_weights(g.means, particles, 4)
    index, weight = eyelid_skinning(face, K, g.means, torch.full((len(g),), EYES), torch.zeros(len(g), dtype=torch.bool),
                                    particles, p_regions, names, index, weight, sheet_eye=eye)
    moving = torch.tensor([names.index(u) for u, _ in lid_partners()] + [names.index(u) for u in
                          ("face:33", "face:133", "face:263", "face:362")])
    assert bool(((weight * torch.isin(index, moving)).sum(1) - 1).abs().max() < 1e-6)
    moved = g.means + blend_translations(blink(particles, names), index, weight)
    my = moved[:, 1] / moved[:, 2] * F
    column = (x - 120.5).abs() < 1e-3
    rows = my[column].sort().values
    torch.testing.assert_close(rows, torch.arange(89.5, 106.0, 1.0), atol=1e-3, rtol=0)   # lower lid: 105.95
    torch.testing.assert_close(moved[:, 2], g.means[:, 2])                 # still behind the lash line


def test_a_tilted_heads_lid_sheet_still_comes_down_over_the_opening():
    """The drawn face, its photo and its particles turned 20 degrees: the sheets are built across the tilted eye
    and a blink lays them over the opening, seen level again: the column at x = 120 covered from the lash band's
    top (89.3) to the lower lid (105.95) with no gap over a pixel."""
    from engine.avatar.eyelids import lid_sheets
    face, particles, p_regions, names = drawn_face()
    deg, H, W = 20.0, 260, 300
    tilted = face.clone()
    tilted[:, :2] = turn(face[:, :2], deg)
    particles = lift(turn(particles[:, :2] / particles[:, 2:] * F, deg))
    image, skin = eyes_photo(fold_rgb=(0.25, 0.15, 0.12), H=H, W=W, deg=deg)
    g, _, eye = lid_sheets(tilted, image, skin, torch.zeros(H, W), K, Z)
    assert len(g) > 0 and set(eye.tolist()) == {0, 1}
    index, weight = skin_weights(g.means, particles, 4)
    index, weight = eyelid_skinning(tilted, K, g.means, torch.full((len(g),), EYES),
                                    torch.zeros(len(g), dtype=torch.bool), particles, p_regions, names, index,
                                    weight, sheet_eye=eye)
    moved = g.means + blend_translations(blink(particles, names), index, weight)
    x, y = turn(moved[:, :2] / moved[:, 2:] * F, -deg).unbind(1)          # seen level
    rows = y[(x - 120.0).abs() < 0.5].sort().values
    assert abs(float(rows[0]) - 89.3) < 0.8 and abs(float(rows[-1]) - 105.95) < 0.8
    assert float(rows.diff().max()) < 1.001                               # the sheet's 1 px spacing


def test_the_under_layer_behind_the_eye_takes_the_lid_skin_colour():
    """What shows behind the eye at a sheet's edge is the lid skin's colour (the lit skin around the eye), not
    the iris and not the fold's shadow."""
    from engine.avatar.eyelids import cover_the_eyes
    from engine.render.gaussians import Gaussians, rgb_to_sh_dc, sh_dc_to_rgb
    face, _, _, _ = drawn_face()
    ring, ring_rgb = ring_of_skin()
    spots = {"under the opening": [(120.0, 100.0)], "under the cheek": [(120.0, 125.0)],
             "back of the head": [(120.0, 100.0)]}
    px = ring.tolist() + [p for v in spots.values() for p in v]
    n = len(px)
    kind = ["skin"] * len(ring) + [k for k, v in spots.items() for _ in v]
    rgb = torch.cat([ring_rgb, torch.tensor([[0.1, 0.05, 0.05]] * (n - len(ring)))])
    g = Gaussians(lift(px), torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), torch.full((n, 3), 0.01), torch.ones(n),
                  rgb_to_sh_dc(rgb)[:, None, :].contiguous())
    is_front = torch.tensor([k == "skin" for k in kind])
    under = torch.tensor([k.startswith("under") for k in kind])
    assert cover_the_eyes(face, K, g, torch.full((n,), FACE), is_front, under) == 1
    out = dict(zip(kind, sh_dc_to_rgb(g.sh[:, 0])))
    torch.testing.assert_close(out["under the opening"], torch.tensor([0.8, 0.6, 0.5]))
    torch.testing.assert_close(out["under the cheek"], torch.tensor([0.1, 0.05, 0.05]))
    torch.testing.assert_close(out["back of the head"], torch.tensor([0.1, 0.05, 0.05]))
