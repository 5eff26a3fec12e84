// The CPU half of the browser splat renderer (splat_gl.js): which Gaussians to draw, and in which order.
//
// The GPU deforms every Gaussian in its vertex shader, but blending needs the Gaussians sorted by depth, and
// the depth of a deformed mean is known only after the deformation. The mean moves by the skinned particle
// translation and the limb-bone rotation alone (the decoder's other deltas change orientation, size, colour
// and opacity), so this file repeats just that part in JS, once per frame, and sorts by camera-space z.
//
//   facingIndices(avatar, viewmat)      per camera: the Gaussians whose rest normal faces the camera
//   deformedMeans(avatar, frame, out)   per frame:  the means after skinning and bone rotation
//   DepthSorter.sort(...)               per frame or camera: back-to-front order of the facing Gaussians
//
// Shapes follow splat_gl.js: avatar arrays are flat typed arrays, n Gaussians, J skin columns, K particles,
// B limb bones; viewmat is a row-major 4x4 world -> camera (OpenCV axes: x right, y down, z forward).

// Cosine below which a Gaussian counts as facing away (engine/render/splat.py `facing`, cos_min).
export const FACING_COS_MIN = -0.2;
// Gaussians nearer than this (camera z) are culled, as cuda_ext/reference.py fully_fused_projection does.
export const NEAR_PLANE = 0.01;
export const FAR_PLANE = 1e10;
export const NO_BONE = 255;

// ------------------------------------------------------------------------------------------- facing cull
// Indices (ascending) of the Gaussians facing the camera of `viewmat`, judged on the rest pose:
// dot(n, eye - mean) >= FACING_COS_MIN * |eye - mean| * |n|; a zero normal (unknown) always passes.
// -> Uint32Array(m), m <= n.
export function facingIndices(avatar, viewmat) {
  const { n, means, normals } = avatar;
  const v = viewmat;
  // eye = -(R^T t), R the rotation rows of the viewmat, t its last column
  const ex = -(v[0] * v[3] + v[4] * v[7] + v[8] * v[11]);
  const ey = -(v[1] * v[3] + v[5] * v[7] + v[9] * v[11]);
  const ez = -(v[2] * v[3] + v[6] * v[7] + v[10] * v[11]);
  const out = new Uint32Array(n);
  let m = 0;
  for (let i = 0; i < n; i++) {
    const i3 = 3 * i;
    const nx = normals[i3], ny = normals[i3 + 1], nz = normals[i3 + 2];
    const dx = ex - means[i3], dy = ey - means[i3 + 1], dz = ez - means[i3 + 2];
    const dot = nx * dx + ny * dy + nz * dz;
    const lengths = Math.sqrt((dx * dx + dy * dy + dz * dz) * (nx * nx + ny * ny + nz * nz));
    if (dot >= FACING_COS_MIN * lengths) out[m++] = i;
  }
  return out.slice(0, m);
}

// ---------------------------------------------------------------------------------------- quaternions
// wxyz quaternions as 4 numbers; `q` arrays hold several, `o` is the offset of the one meant.

// The blend of bone rotations p = bones[a], q = bones[b] with share s (engine/avatar/limbs.py quat_nlerp):
// q flipped onto p's side, then normalize((1 - s) p + s q). Writes wxyz into out[0..3].
export function boneBlend(bones, a, b, s, out) {
  const pa = 4 * a, pb = 4 * b;
  const dot = bones[pa] * bones[pb] + bones[pa + 1] * bones[pb + 1] + bones[pa + 2] * bones[pb + 2] +
    bones[pa + 3] * bones[pb + 3];
  const sq = dot < 0 ? -s : s;
  let len = 0;
  for (let c = 0; c < 4; c++) {
    out[c] = (1 - s) * bones[pa + c] + sq * bones[pb + c];
    len += out[c] * out[c];
  }
  len = Math.sqrt(len) || 1;
  for (let c = 0; c < 4; c++) out[c] /= len;
  return out;
}

// R(q) v for a unit quaternion q (wxyz, q[0..3]) and v = (x, y, z) -> out[0..2].
export function rotate(q, x, y, z, out) {
  const w = q[0], qx = q[1], qy = q[2], qz = q[3];
  out[0] = (1 - 2 * (qy * qy + qz * qz)) * x + 2 * (qx * qy - w * qz) * y + 2 * (qx * qz + w * qy) * z;
  out[1] = 2 * (qx * qy + w * qz) * x + (1 - 2 * (qx * qx + qz * qz)) * y + 2 * (qy * qz - w * qx) * z;
  out[2] = 2 * (qx * qz - w * qy) * x + 2 * (qy * qz + w * qx) * y + (1 - 2 * (qx * qx + qy * qy)) * z;
  return out;
}

// ------------------------------------------------------------------------------------------- deformation
// The deformed means, for the depth sort: mean + sum_j w_ij translation[idx_ij], then for a bone Gaussian
// + R(q) offset - offset with q the blend of its two bones' rotations. frame null = the rest pose.
// `only` (optional Uint32Array): deform just these Gaussians (the others keep stale values).
// -> out Float32Array(n * 3).
export function deformedMeans(avatar, frame, out, only = null) {
  const { n, J, means, skinIndex, skinWeight, bone, other, share, offset } = avatar;
  const tr = frame && frame.translation;
  const bones = frame && frame.bones;
  const q = new Float64Array(4), r = new Float64Array(3);
  const count = only ? only.length : n;
  for (let k = 0; k < count; k++) {
    const i = only ? only[k] : k;
    const i3 = 3 * i;
    let x = means[i3], y = means[i3 + 1], z = means[i3 + 2];
    if (tr) {
      for (let j = i * J, end = j + J; j < end; j++) {
        const w = skinWeight[j], p = 3 * skinIndex[j];
        x += w * tr[p]; y += w * tr[p + 1]; z += w * tr[p + 2];
      }
    }
    if (bones && bone[i] !== NO_BONE) {
      boneBlend(bones, bone[i], other[i], share[i], q);
      const ox = offset[i3], oy = offset[i3 + 1], oz = offset[i3 + 2];
      rotate(q, ox, oy, oz, r);
      x += r[0] - ox; y += r[1] - oy; z += r[2] - oz;
    }
    out[i3] = x; out[i3 + 1] = y; out[i3 + 2] = z;
  }
  return out;
}

// ----------------------------------------------------------------------------------------------- sorting
// Back-to-front order by camera-space depth, as the reference composites front to back over a stable sort
// of the float32 depths (ties keep the Gaussian order): here an LSD radix sort in two 16-bit passes over
// the float32 bit patterns (monotone for positive floats), read back reversed.
export class DepthSorter {
  constructor() {
    this.capacity = 0;
    this.counts = new Uint32Array(1 << 16);
  }

  _grow(m) {
    if (m <= this.capacity) return;
    this.capacity = m;
    this.depth = new Float32Array(m);                // camera z of each candidate
    this.keys = new Uint32Array(this.depth.buffer);  // ... as its bit pattern
    this.keysB = new Uint32Array(m);
    this.ids = new Uint32Array(m);
    this.idsB = new Uint32Array(m);
    this.order = new Uint32Array(m);                 // the result: Gaussian indices, farthest first
  }

  // means Float32Array(n*3) (deformed), candidates Uint32Array(m) (ascending indices), viewmat row-major 4x4
  // -> number of Gaussians in front of the near plane; this.order[0 .. count) holds them farthest first.
  sort(means, candidates, viewmat) {
    this._grow(candidates.length);
    const r0 = viewmat[8], r1 = viewmat[9], r2 = viewmat[10], t = viewmat[11];
    const { depth, keys, ids } = this;
    let m = 0;
    for (let k = 0; k < candidates.length; k++) {
      const i = candidates[k], i3 = 3 * i;
      const z = Math.fround(r0 * means[i3] + r1 * means[i3 + 1] + r2 * means[i3 + 2] + t);
      if (!(z > NEAR_PLANE && z < FAR_PLANE)) continue;
      depth[m] = z;
      ids[m++] = i;
    }
    // two stable counting passes: low 16 bits, then high 16 bits
    this._pass(keys, ids, this.keysB, this.idsB, m, 0);
    this._pass(this.keysB, this.idsB, keys, ids, m, 16);
    const order = this.order;
    for (let k = 0; k < m; k++) order[k] = ids[m - 1 - k];
    return m;
  }

  _pass(keysIn, idsIn, keysOut, idsOut, m, shift) {
    const counts = this.counts;
    counts.fill(0);
    for (let k = 0; k < m; k++) counts[(keysIn[k] >>> shift) & 0xffff]++;
    let sum = 0;
    for (let b = 0; b < counts.length; b++) {
      const c = counts[b];
      counts[b] = sum;
      sum += c;
    }
    for (let k = 0; k < m; k++) {
      const at = counts[(keysIn[k] >>> shift) & 0xffff]++;
      keysOut[at] = keysIn[k];
      idsOut[at] = idsIn[k];
    }
  }
}
