"""The avatar bundle: what personalize produces and every later stage reads.

An `Avatar` is canonical Gaussians [N, ...] with a region label per Gaussian [N], K control particles [K, 3]
anchored to named landmarks, skinning from every Gaussian to its nearest particles ([N, J] indices and
weights), and the camera of the source photo. On disk (`save_pretrained(dir)`):

    gaussians.ply        the canonical Gaussians, standard 3DGS layout, in the photo camera's frame (y down, at
                         z ~ 2.5); for web 3DGS viewers use `audioavatar export` (engine/avatar/web_export.py)
    avatar.json          format version, region names, particle names, the photo's camera, metadata
    avatar.safetensors   regions [N], particles [K, 3], particle_regions [K], skin_index [N, J], skin_weight [N, J],
                         normals [N, 3] (optional: which way each Gaussian faces, for back-face culling),
                         bones [N] (optional: the limb bone each Gaussian turns with, engine/avatar/limbs.py),
                         away_dc [N, 3] (optional: the colour each Gaussian shows away from the photo camera,
                         engine/render/away.py)
    decoder/             optional: the avatar's trained GaussianDecoder (engine/deform/decoder.py, its own
                         save_pretrained folder), written by the distillation; without it the avatar moves by
                         skinning alone (`deformer`)

Writing goes to a temporary folder beside the target, renamed into place only when complete, so a failure
never leaves a half-written bundle and never damages one already there; a folder that is not a bundle is
never replaced (engine.pretrained.atomic_dir_write).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from engine.deform.decoder import DecoderConfig, GaussianDecoder
from engine.pretrained import atomic_dir_write
from engine.render.away import AwayColour
from engine.render.camera import camera_centre
from engine.render.gaussians import Gaussians
from engine.render.ply import read_ply, write_ply

FORMAT_VERSION = 1
REGIONS = ("body", "face", "lips", "eyes", "hands", "hair")   # region id = index; "hair" also holds "other"
FILES = ("gaussians.ply", "avatar.json", "avatar.safetensors")
MARKER = "avatar.json"                  # every bundle holds it; a folder without it is not ours to replace


@dataclass
class PhotoCamera:
    """The camera the photo was taken with: K [3, 3], viewmat [4, 4] world->camera, image size."""
    K: Tensor
    viewmat: Tensor
    width: int
    height: int

    def scaled_K(self, width: int, height: int) -> Tensor:
        """K [3, 3] of this camera for an image of width x height: the photo's frame fitted inside it with its
        aspect kept (one scale for x and y, centred; a tall photo in a square frame gets side margins), so a
        face is never stretched."""
        s = min(width / self.width, height / self.height)
        K = self.K.clone().float()
        K[0, 0], K[1, 1] = K[0, 0] * s, K[1, 1] * s
        K[0, 2] = K[0, 2] * s + (width - s * self.width) / 2
        K[1, 2] = K[1, 2] * s + (height - s * self.height) / 2
        return K


@dataclass
class Avatar:
    gaussians: Gaussians
    regions: Tensor            # [N] int64, index into REGIONS
    particles: Tensor          # [K, 3] control particles in the canonical pose
    particle_regions: Tensor   # [K] int64
    particle_names: list[str]  # [K] semantic anchors, e.g. "face:13", "hand_left:4", "pose:11"
    skin_index: Tensor         # [N, J] int64, particles each Gaussian follows
    skin_weight: Tensor        # [N, J] float, rows sum to 1
    camera: PhotoCamera
    meta: dict = field(default_factory=dict)
    normals: Tensor | None = None  # [N, 3] outward facing of each Gaussian (unit, or 0 = unknown): back-face culling
    decoder: GaussianDecoder | None = None   # trained for this avatar (distill/), or None
    bones: Tensor | None = None    # [N] int64: the limb bone each Gaussian turns with (engine.avatar.limbs), -1 none
    away_dc: Tensor | None = None  # [N, 3] SH DC colour each Gaussian shows away from the photo camera

    def away_colour(self) -> AwayColour | None:
        """The colours the Gaussians show away from the photo camera (engine.render.away), or None if the avatar
        looks the same from everywhere."""
        if self.away_dc is None:
            return None
        return AwayColour(self.away_dc, camera_centre(self.camera.viewmat.float()), self.gaussians.sh[:, 0])

    def deformer(self) -> GaussianDecoder:
        """The decoder that moves this avatar: its trained one, or an untrained one for its K particles, whose
        zero-initialised heads leave pure skinning (eval mode either way)."""
        if self.decoder is not None:
            return self.decoder.eval()
        return GaussianDecoder(DecoderConfig(n_particles=self.particles.shape[0])).eval()

    def validate(self) -> "Avatar":
        """Checks that every part agrees on N, K and J; raises ValueError naming the part."""
        N, K = len(self.gaussians), self.particles.shape[0]
        want = {"regions": (self.regions, (N,)), "particles": (self.particles, (K, 3)),
                "particle_regions": (self.particle_regions, (K,)),
                "skin_index": (self.skin_index, (N, self.skin_index.shape[-1])),
                "skin_weight": (self.skin_weight, (N, self.skin_index.shape[-1]))}
        for name, (t, shape) in want.items():
            if tuple(t.shape) != shape:
                raise ValueError(f"avatar {name}: expected shape {list(shape)}, got {list(t.shape)}")
        if self.normals is not None and tuple(self.normals.shape) != (N, 3):
            raise ValueError(f"avatar normals: expected shape {[N, 3]}, got {list(self.normals.shape)}")
        if self.bones is not None and tuple(self.bones.shape) != (N,):
            raise ValueError(f"avatar bones: expected shape {[N]}, got {list(self.bones.shape)}")
        if self.away_dc is not None and tuple(self.away_dc.shape) != (N, 3):
            raise ValueError(f"avatar away_dc: expected shape {[N, 3]}, got {list(self.away_dc.shape)}")
        if self.decoder is not None and self.decoder.config.n_particles != K:
            raise ValueError(f"avatar decoder: made for {self.decoder.config.n_particles} particles, "
                             f"the avatar has {K}")
        if len(self.particle_names) != K:
            raise ValueError(f"avatar particle_names: expected {K} names, got {len(self.particle_names)}")
        if N and (int(self.regions.min()) < 0 or int(self.regions.max()) >= len(REGIONS)):
            raise ValueError(f"avatar regions: ids must lie in 0..{len(REGIONS) - 1}")
        if N and (int(self.skin_index.min()) < 0 or int(self.skin_index.max()) >= K):
            raise ValueError(f"avatar skin_index: indices must lie in 0..{K - 1}")
        if N and not torch.allclose(self.skin_weight.sum(-1), torch.ones(N, dtype=self.skin_weight.dtype), atol=1e-4):
            raise ValueError("avatar skin_weight: every row must sum to 1")
        return self

    # ------------------------------------------------------------------------------------------ disk
    def save_pretrained(self, directory: str | Path) -> Path:
        """Writes the bundle atomically (engine.pretrained.atomic_dir_write); returns the folder. An existing
        `directory` is replaced only when it is an avatar bundle (or empty): anything else is a ValueError."""
        self.validate()
        arrays = {"regions": self.regions.contiguous(), "particles": self.particles.contiguous(),
                  "particle_regions": self.particle_regions.contiguous(),
                  "skin_index": self.skin_index.contiguous(), "skin_weight": self.skin_weight.contiguous()}
        if self.normals is not None:
            arrays["normals"] = self.normals.float().contiguous()
        if self.bones is not None:
            arrays["bones"] = self.bones.long().contiguous()
        if self.away_dc is not None:
            arrays["away_dc"] = self.away_dc.float().contiguous()
        config = {"format_version": FORMAT_VERSION, "regions": list(REGIONS), "n_gaussians": len(self.gaussians),
                  "n_particles": int(self.particles.shape[0]), "skin_neighbours": int(self.skin_index.shape[1]),
                  "particle_names": self.particle_names,
                  "camera": {"K": self.camera.K.tolist(), "viewmat": self.camera.viewmat.tolist(),
                             "width": self.camera.width, "height": self.camera.height},
                  "meta": self.meta}

        def write(tmp: Path) -> None:
            write_ply(tmp / "gaussians.ply", self.gaussians.to_ply())
            save_file(arrays, str(tmp / "avatar.safetensors"))
            if self.decoder is not None:
                self.decoder.save_pretrained(tmp / "decoder")
            (tmp / MARKER).write_text(json.dumps(config, indent=1))
        return atomic_dir_write(directory, write, marker=MARKER)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "Avatar":
        """Reads a bundle written by save_pretrained; a missing or inconsistent part is a ValueError."""
        d = Path(directory)
        missing = [f for f in FILES if not (d / f).is_file()]
        if missing:
            raise ValueError(f"{d}: not an avatar bundle, missing {missing}")
        try:
            config = json.loads((d / "avatar.json").read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{d / 'avatar.json'}: not valid JSON: {e}") from e
        if config.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{d / 'avatar.json'}: format_version {config.get('format_version')!r}, "
                             f"this code reads {FORMAT_VERSION}")
        if tuple(config.get("regions", ())) != REGIONS:
            raise ValueError(f"{d / 'avatar.json'}: regions {config.get('regions')} differ from {list(REGIONS)}")
        try:
            arrays = load_file(str(d / "avatar.safetensors"))
        except Exception as e:  # noqa: BLE001 - safetensors raises several types for a bad file
            raise ValueError(f"{d / 'avatar.safetensors'}: unreadable: {e}") from e
        absent = {"regions", "particles", "particle_regions", "skin_index", "skin_weight"} - set(arrays)
        if absent:
            raise ValueError(f"{d / 'avatar.safetensors'}: missing {sorted(absent)}")
        cam = config["camera"]
        avatar = cls(Gaussians.from_ply(read_ply(d / "gaussians.ply")), arrays["regions"], arrays["particles"],
                     arrays["particle_regions"], list(config["particle_names"]), arrays["skin_index"],
                     arrays["skin_weight"], PhotoCamera(torch.tensor(cam["K"]), torch.tensor(cam["viewmat"]),
                                                        int(cam["width"]), int(cam["height"])),
                     dict(config.get("meta", {})), arrays.get("normals"), bones=arrays.get("bones"),
                     away_dc=arrays.get("away_dc"))
        if (d / "decoder").is_dir():
            avatar.decoder = GaussianDecoder.from_pretrained(d / "decoder")
        return avatar.validate()

