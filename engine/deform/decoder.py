"""The per-avatar Gaussian decoder (AudioAvatar §3.2) and the deformation it drives.

Data path: particle motions x_t [T, K, 3] (engine/motion, converted from face units to this avatar's world units
with engine.avatar.particles.motion_scale) -> `GaussianDecoder.forward` -> per-particle deltas [T, K, 13] ->
`GaussianDecoder.deform` blends them onto every Gaussian through the avatar's skinning ([N, J] indices and
weights) -> deformed `Gaussians` -> engine/render -> cuda_ext.

Delta channels (DELTA_CHANNELS = 13), per particle:
    [0:3]   d_mean      world units, added to the particle's own displacement
    [3:6]   d_rotvec    axis-angle, radians
    [6:9]   d_log_scale natural log of a scale factor
    [9:12]  d_color     RGB, added to the colour the DC SH term renders
    [12]    d_opacity   added to the opacity, which is then clamped to [0, 1]

Deformation of Gaussian i with particles j = skin_index[i] and weights w = skin_weight[i] (rows sum to 1):
    mean'    = mean + sum_j w_ij (motion_j + d_mean_j)
    quat'    = normalize(rotvec_to_quat(sum_j w_ij d_rotvec_j) ⊗ quat)      (left untouched where that sum is 0)
    scale'   = scale * exp(sum_j w_ij d_log_scale_j)
    sh'[:,0] = sh[:,0] + (sum_j w_ij d_color_j) / SH_C0                      (higher SH bands untouched)
    opacity' = clamp(opacity + sum_j w_ij d_opacity_j, 0, 1)
With zero motion and zero deltas every field comes back bitwise equal (tests/test_decoder.py): x + 0, x * exp(0)
and the identity quaternion product all round-trip exactly, and nothing goes through logit/sigmoid.

Speed (25 fps on 2 CPU cores, N = 52k, J = 4, K = 143, SH degree 0): the skinning is one sparse CSR matrix
[N, K] built once per (skin_index, skin_weight) pair and cached, so a blend is one sparse-dense matmul (about 3x
faster here than gathering [N, J, C]); the rotation runs on 1-D components with per-avatar cached quaternion bases.
Measured on the shared 2-core dev VM: about 0.4-0.6 ms per frame while the head is zero (one [K, 3] blend; the MLP
is skipped) and about 2-5 ms with every delta nonzero, depending on machine load. A good part of the latter is
page faults from glibc returning freed [N, C] buffers to the OS each frame; a process that raises
M_MMAP_THRESHOLD / M_TRIM_THRESHOLD (mallopt, or MALLOC_MMAP_THRESHOLD_=... in the environment) gets about 2.2 ms.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cuda_ext.reference import SH_C0
from engine.pretrained import Pretrained
from engine.render.gaussians import Gaussians

DELTA_CHANNELS = 13
D_MEAN, D_ROTVEC, D_LOG_SCALE, D_COLOR, D_OPACITY = slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 12), slice(12, 13)


@dataclass
class DecoderConfig:
    n_particles: int          # K of THIS avatar (its particles in Avatar order, not the canonical slots)
    hidden: int = 64          # width of the context MLP and the trunk
    embed: int = 16           # learned per-particle embedding size
    layers: int = 2           # hidden layers of the trunk before the zero-initialised head
    input_scale: float = 1.0  # multiplies the motion before the MLP only (e.g. 1 / face-unit length, so the network
                              # sees face units); the deformation itself always uses the raw world-unit motion

    def __post_init__(self) -> None:
        for name in ("n_particles", "hidden", "embed", "layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"DecoderConfig.{name}: must be a positive int, got {value!r}")
        if not (isinstance(self.input_scale, (int, float)) and self.input_scale > 0):
            raise ValueError(f"DecoderConfig.input_scale: must be a positive number, got {self.input_scale!r}")


def _mlp(dims: list[int]) -> nn.Sequential:
    """Linear layers with SiLU between them (and after the last, since every use here feeds a further layer)."""
    mods: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        mods += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*mods)


class GaussianDecoder(Pretrained, nn.Module):
    """Particle displacements [T, K, 3] (world units) -> per-particle Gaussian deltas [T, K, 13].

    Each particle sees its own (scaled) displacement, its learned embedding [K, embed] and a global context: the
    mean over particles of an MLP of (displacement, embedding), so a particle can react to motion elsewhere (the
    cheek to the jaw). The head is zero-initialised: an untrained decoder outputs exactly zero deltas and the
    avatar stays in its rest pose apart from the linear-blend skinning of the motion itself.
    """
    config_class = DecoderConfig

    def __init__(self, config: DecoderConfig):
        super().__init__()
        if not isinstance(config, DecoderConfig):
            raise ValueError(f"config: expected a DecoderConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.particle_embed = nn.Parameter(torch.randn(c.n_particles, c.embed) * 0.5)
        self.context = _mlp([3 + c.embed, c.hidden, c.hidden])
        self.trunk = _mlp([3 + c.embed + c.hidden] + [c.hidden] * c.layers)
        self.head = nn.Linear(c.hidden, DELTA_CHANNELS)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        # Pure optimisations with identical results (tests/test_decoder.py checks both settings agree).
        self.skip_zero_work = True
        self._skin_cache: tuple | None = None   # (skin_index, skin_weight, versions, device, dtype, csr)
        self._quat_cache: tuple | None = None   # (quats, version, (i ⊗ q, j ⊗ q, k ⊗ q, |q|^2))

    # ------------------------------------------------------------------------------------------ network
    def _head_is_zero(self) -> bool:
        return not bool(self.head.weight.any()) and not bool(self.head.bias.any())

    def _needs_grad(self, motion: Tensor) -> bool:
        return torch.is_grad_enabled() and (motion.requires_grad or any(p.requires_grad for p in self.parameters()))

    def forward(self, motion: Tensor) -> Tensor:
        """motion [T, K, 3] particle displacements in world units -> deltas [T, K, 13] (channels: module doc)."""
        return self._deltas(self._check_motion(motion, batched=True))

    def _deltas(self, motion: Tensor) -> Tensor:
        """forward without the input checks (its callers have made them)."""
        T, K, _ = motion.shape
        param = self.head.weight
        if self.skip_zero_work and self._head_is_zero() and not self._needs_grad(motion):
            # A zero head maps any finite hidden state to exactly 0 (finite inputs are checked above).
            return torch.zeros(T, K, DELTA_CHANNELS, dtype=param.dtype, device=param.device)
        x = motion.to(param.dtype) * self.config.input_scale
        p = torch.cat([x, self.particle_embed.expand(T, K, -1)], dim=-1)               # [T, K, 3 + embed]
        ctx = self.context(p).mean(dim=1, keepdim=True).expand(T, K, -1)               # [T, K, hidden]
        return self.head(self.trunk(torch.cat([p, ctx], dim=-1)))                      # [T, K, 13]

    # ------------------------------------------------------------------------------------------ deformation
    def deform(self, g: Gaussians, skin_index: Tensor, skin_weight: Tensor, motion: Tensor) -> Gaussians:
        """One frame: canonical Gaussians g (N), skinning [N, J], motion [K, 3] (world units) -> deformed Gaussians.

        Fields that the frame leaves unchanged may be returned as the very tensors of `g` (no copy); treat
        Gaussians as immutable.
        """
        motion = self._check_motion(motion, batched=False)
        skin = self._skin_matrix(g, skin_index, skin_weight)
        deltas = self._deltas(motion.unsqueeze(0))[0]                                      # [K, 13]
        return self._deform_with(g, skin, motion.to(deltas.dtype), deltas)

    def deform_batch(self, g: Gaussians, skin_index: Tensor, skin_weight: Tensor, motion: Tensor) -> list[Gaussians]:
        """T frames at once: motion [T, K, 3] -> a list of T deformed Gaussians (one decoder pass for all frames)."""
        motion = self._check_motion(motion, batched=True)
        skin = self._skin_matrix(g, skin_index, skin_weight)
        deltas = self._deltas(motion)                                                      # [T, K, 13]
        motion = motion.to(deltas.dtype)
        return [self._deform_with(g, skin, motion[t], deltas[t]) for t in range(motion.shape[0])]

    def _deform_with(self, g: Gaussians, skin: Tensor | tuple, motion: Tensor, deltas: Tensor) -> Gaussians:
        """Blend per-particle motion [K, 3] and deltas [K, 13] onto the Gaussians through the skinning."""
        skip = self.skip_zero_work and not (torch.is_grad_enabled() and deltas.requires_grad)
        # The translation [K, 3] is blended on its own, in both paths, so skipping all-zero deltas can never
        # change it (and an untrained decoder pays for one small blend only).
        means = g.means + _blend(skin, motion + deltas[:, D_MEAN])
        if skip and not bool(deltas[:, D_MEAN.stop:].any()):
            return Gaussians(means, g.quats, g.scales, g.opacities, g.sh)
        # Colour goes in already divided by SH_C0 (the blend is linear), so the DC update is a single add.
        per_particle = torch.cat([deltas[:, D_ROTVEC], deltas[:, D_LOG_SCALE], deltas[:, D_COLOR] / SH_C0,
                                  deltas[:, D_OPACITY]], dim=1)                            # [K, 10]
        b = _blend(skin, per_particle)                                                     # [N, 10]
        quats = self._rotate(g.quats, b[:, 0].contiguous(), b[:, 1].contiguous(), b[:, 2].contiguous())
        scales = g.scales * b[:, 3:6].contiguous().exp()      # exp on a strided view is several times slower
        dc = (g.sh[:, 0] + b[:, 6:9]).unsqueeze(1)
        sh = dc if g.sh.shape[1] == 1 else torch.cat([dc, g.sh[:, 1:]], dim=1)
        opacities = (g.opacities + b[:, 9]).clamp(0.0, 1.0)
        return Gaussians(means, quats, scales, opacities, sh)

    def _rotate(self, quats: Tensor, rx: Tensor, ry: Tensor, rz: Tensor) -> Tensor:
        """normalize(rotvec_to_quat(r) ⊗ q) for quats [N, 4] and blended rotvec components [N] each -> [N, 4].

        Written on 1-D components for speed (about 25 elementwise passes instead of about 70, and no reductions
        over a last dimension of 3 or 4): r ⊗ q = w q + x (i ⊗ q) + y (j ⊗ q) + z (k ⊗ q), with the bases i ⊗ q,
        j ⊗ q, k ⊗ q and |q|^2 cached per canonical quats. Tested against quaternion.

        The angle is sqrt(|r|^2 + 1e-20) instead of the two-branch series of rotvec_to_quat: at r = 0 that gives
        w = cos(5e-11) = 1 and x = 0 * k = 0 exactly, a finite gradient (d|r|^2/dr = 0 there), and for any
        |r| > 0 it changes w and k by under 1e-20, far below float32 resolution. Where r = 0 the normalising
        factor is exactly 1, so the result is bitwise q; gradients still reach r there (d(x, y, z)/dr = k = 1/2),
        so a zero-initialised head can learn rotations.
        """
        iq, jq, kq, norm_sq = self._quat_bases(quats)
        theta_sq = rx * rx
        theta_sq = theta_sq.addcmul(ry, ry).addcmul(rz, rz)
        theta = (theta_sq + 1e-20).sqrt()
        half = theta * 0.5
        w, k = half.cos(), half.sin() / theta
        # |r ⊗ q|^2 = |r|^2 |q|^2 with |r|^2 = w^2 + k^2 theta^2, so normalising needs no reduction.
        r_sq = torch.addcmul(w * w, k * k, theta_sq)
        inv = torch.where(theta_sq > 0, (norm_sq * r_sq).clamp_min(1e-24).rsqrt(), 1.0)
        k = k * inv
        out = quats * (w * inv).unsqueeze(1)
        out = torch.addcmul(out, iq, (k * rx).unsqueeze(1))
        out = torch.addcmul(out, jq, (k * ry).unsqueeze(1))
        return torch.addcmul(out, kq, (k * rz).unsqueeze(1))

    def _quat_bases(self, quats: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """i ⊗ q, j ⊗ q, k ⊗ q [N, 4] each and |q|^2 [N] for quats [N, 4]; cached unless q needs gradients."""
        needs_grad = torch.is_grad_enabled() and quats.requires_grad
        c = self._quat_cache
        if not needs_grad and c is not None and c[0] is quats and c[1] == quats._version:
            return c[2]
        w, x, y, z = quats.unbind(-1)
        bases = (torch.stack([-x, w, -z, y], dim=-1), torch.stack([-y, z, w, -x], dim=-1),
                 torch.stack([-z, -y, x, w], dim=-1), (quats * quats).sum(-1))
        if not needs_grad:
            self._quat_cache = (quats, quats._version, bases)
        return bases

    # ------------------------------------------------------------------------------------------ checks, skinning
    def _check_motion(self, motion: Tensor, batched: bool) -> Tensor:
        K = self.config.n_particles
        want = "[T, K, 3]" if batched else "[K, 3]"
        if not isinstance(motion, Tensor):
            raise ValueError(f"motion: expected a torch.Tensor {want}, got {type(motion).__name__}")
        ndim = 3 if batched else 2
        if motion.ndim != ndim or motion.shape[-2:] != (K, 3):
            raise ValueError(f"motion: expected shape {want} with K = {K}, got {list(motion.shape)}")
        if not motion.is_floating_point():
            raise ValueError(f"motion: expected a floating dtype, got {motion.dtype}")
        if not bool(torch.isfinite(motion).all()):
            raise ValueError("motion: every value must be finite (found NaN or inf)")
        return motion

    def _skin_matrix(self, g: Gaussians, skin_index: Tensor, skin_weight: Tensor) -> Tensor | tuple:
        """The skinning as a sparse CSR matrix [N, K] (cached per tensor pair); (index, weight) when the weights
        need gradients (sparse CSR cannot pass them back)."""
        if not isinstance(g, Gaussians):
            raise ValueError(f"g: expected Gaussians, got {type(g).__name__}")
        N, K = len(g), self.config.n_particles
        for name, t, tail in (("means", g.means, (3,)), ("quats", g.quats, (4,)), ("scales", g.scales, (3,)),
                              ("opacities", g.opacities, ())):
            if tuple(t.shape) != (N, *tail):
                raise ValueError(f"g.{name}: expected shape {[N, *tail]}, got {list(t.shape)}")
        if g.sh.ndim != 3 or g.sh.shape[0] != N or g.sh.shape[2] != 3:
            raise ValueError(f"g.sh: expected shape [{N}, (degree + 1)^2, 3], got {list(g.sh.shape)}")
        for name, t in (("skin_index", skin_index), ("skin_weight", skin_weight)):
            if not isinstance(t, Tensor) or t.ndim != 2 or t.shape[0] != N or t.shape[1] < 1:
                shape = list(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"{name}: expected shape [N, J] with N = {N} Gaussians, J >= 1, got {shape}")
        if skin_index.shape != skin_weight.shape:
            raise ValueError(f"skin_weight: expected the shape of skin_index {list(skin_index.shape)}, "
                             f"got {list(skin_weight.shape)}")
        if skin_index.dtype not in (torch.int64, torch.int32) or not skin_weight.is_floating_point():
            raise ValueError(f"skin_index/skin_weight: expected int64/int32 and a floating dtype, "
                             f"got {skin_index.dtype} and {skin_weight.dtype}")
        dtype, device = self.head.weight.dtype, self.head.weight.device
        if torch.is_grad_enabled() and skin_weight.requires_grad:
            self._check_index(skin_index, K)
            return skin_index.to(device), skin_weight.to(device, dtype)
        versions = (skin_index._version, skin_weight._version)
        c = self._skin_cache
        if c is not None and c[0] is skin_index and c[1] is skin_weight and c[2:5] == (versions, device, dtype):
            return c[5]
        self._check_index(skin_index, K)
        J = skin_index.shape[1]
        itype = torch.int32 if N * J < 2**31 else torch.int64      # int32 spares the matmul an index conversion
        crow = torch.arange(0, N * J + 1, J, dtype=itype, device=device)
        with warnings.catch_warnings():   # "sparse CSR support is in beta": the matmul used here is long stable
            warnings.simplefilter("ignore", UserWarning)
            csr = torch.sparse_csr_tensor(crow, skin_index.reshape(-1).to(device, itype),
                                          skin_weight.detach().reshape(-1).to(device, dtype), (N, K),
                                          check_invariants=False)
        self._skin_cache = (skin_index, skin_weight, versions, device, dtype, csr)
        return csr

    @staticmethod
    def _check_index(skin_index: Tensor, K: int) -> None:
        if skin_index.numel() and (int(skin_index.min()) < 0 or int(skin_index.max()) >= K):
            raise ValueError(f"skin_index: every index must lie in 0..{K - 1} (the decoder's n_particles), "
                             f"got range {int(skin_index.min())}..{int(skin_index.max())}")


def _blend(skin: Tensor | tuple, per_particle: Tensor) -> Tensor:
    """sum_j w_ij v_j: skinning (CSR [N, K], or (index [N, J], weight [N, J])) and values [K, C] -> [N, C]."""
    if isinstance(skin, tuple):
        index, weight = skin
        N, J = index.shape
        gathered = per_particle.index_select(0, index.reshape(-1)).view(N, J, -1)
        return (gathered * weight.unsqueeze(-1)).sum(dim=1)
    return skin @ per_particle
