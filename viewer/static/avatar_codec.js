/*
 * The avatar packed for client-side rendering (engine/avatar/splat_pack.py lays it out; this is the reader):
 * GET /avatar.splat -> "AASPLAT1", a JSON header, quantised sections -> the float arrays splat_gl.js draws.
 *
 *   means [n*3]  quats [n*4] (wxyz, unit)  scales [n*3]  opacities [n]  colors [n*3] (base colour, unclamped)
 *   awayColors [n*3]  photoEye [3]  awayDeg [2]   (the colour away from the photo camera, engine/render/away.py)
 *   normals [n*3]  skinIndex [n*J]  skinWeight [n*J] (rows sum to 1)
 *   bone [n] (255 = none)  other [n]  share [n]  offset [n*3]   (the limb bones; other/share/offset 0 off a bone)
 * plus header: camera {viewmat [16] row-major, fx, fy, cx, cy, width, height}, pivot [3], K, J, B.
 */
const MAGIC = "AASPLAT1";
const TYPES = { uint8: Uint8Array, int8: Int8Array, uint16: Uint16Array, int16: Int16Array };

/** Download and decode the avatar at `url` (the welcome's "avatar"); resolves to { header, avatar }. */
export async function fetchAvatar(url) {
  const r = await fetch(url, { cache: "no-cache" });            // revalidated by ETag: downloaded once
  if (!r.ok) throw new Error(`avatar: GET ${url} answered ${r.status}`);
  return decodeAvatar(await r.arrayBuffer());
}

/** An ArrayBuffer of the packed avatar -> { header, avatar } (the arrays named at the top). */
export function decodeAvatar(buf) {
  const bytes = new Uint8Array(buf);
  const magic = String.fromCharCode(...bytes.subarray(0, 8));
  if (magic !== MAGIC) throw new Error(`avatar: expected magic ${MAGIC}, got ${JSON.stringify(magic)}`);
  const headLen = new DataView(buf).getUint32(8, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + headLen)));
  const raw = {};
  for (const s of header.sections) {
    const count = s.shape.reduce((a, b) => a * b, 1);
    const Type = TYPES[s.dtype];
    if (!Type) throw new Error(`avatar: section ${s.name} has unknown dtype ${s.dtype}`);
    if (s.offset + count * Type.BYTES_PER_ELEMENT > buf.byteLength) throw new Error(`avatar: ${s.name} is cut off`);
    raw[s.name] = { q: new Type(buf, s.offset, count), range: s.range };    // offsets are 4-aligned
  }
  const n = header.n;
  const J = header.J;

  const means = new Float32Array(3 * n);
  { const { q, range: [lo, hi] } = raw.means;
    for (let i = 0; i < 3 * n; i++) { const a = i % 3; means[i] = lo[a] + (q[i] / 65535) * (hi[a] - lo[a]); } }
  const quats = new Float32Array(4 * n);
  { const q = raw.quats.q;
    for (let i = 0; i < n; i++) {
      const w = q[4 * i], x = q[4 * i + 1], y = q[4 * i + 2], z = q[4 * i + 3];
      const len = Math.hypot(w, x, y, z) || 1;
      quats[4 * i] = w / len; quats[4 * i + 1] = x / len; quats[4 * i + 2] = y / len; quats[4 * i + 3] = z / len;
    } }
  const scales = dequantise(raw.log_scales, 65535, Math.exp);
  const colors = dequantise(raw.colors, 255, (x) => x);
  const opacities = Float32Array.from(raw.opacities.q, (q) => q / 255);
  const awayColors = dequantise(raw.away_colors, 255, (x) => x);
  const photoEye = Float32Array.from(header.photo_eye);
  const awayDeg = Float32Array.from(header.away_deg);
  const normals = Float32Array.from(raw.normals.q, (q) => q / 127);
  const skinIndex = Uint16Array.from(raw.skin_index.q);
  const skinWeight = new Float32Array(J * n);
  { const w = dequantise({ q: raw.skin_weight.q, range: raw.skin_weight.range || [0, 1] }, 255, (x) => x);
    for (let i = 0; i < n; i++) {        // a weight may be a little below 0 or over 1 (the eyelids' lash band)
      let total = 0;
      for (let j = 0; j < J; j++) total += w[J * i + j];
      const ok = Math.abs(total) > 1e-6;
      for (let j = 0; j < J; j++) skinWeight[J * i + j] = ok ? w[J * i + j] / total : (j === 0 ? 1 : 0);
    } }
  // limb bones: the packed rows hold only the Gaussians on a bone, in order; spread them over all n
  const bone = Uint8Array.from(raw.bone.q);
  const other = new Uint8Array(n);
  const share = new Float32Array(n);
  const offset = new Float32Array(3 * n);
  { const top = raw.bone_offset.range[1];
    let row = 0;
    for (let i = 0; i < n; i++) {
      if (bone[i] === 255) continue;
      other[i] = raw.bone_other.q[row];
      share[i] = raw.bone_share.q[row] / 510;
      for (let a = 0; a < 3; a++) offset[3 * i + a] = (raw.bone_offset.q[3 * row + a] / 32767) * top;
      row++;
    }
    if (row !== raw.bone_other.q.length) throw new Error(`avatar: ${row} Gaussians on bones, ${raw.bone_other.q.length} rows`);
  }
  const avatar = { n, K: header.K, J, B: header.B, means, quats, scales, opacities, colors, awayColors, photoEye, awayDeg,
                   normals, skinIndex, skinWeight, bone, other, share, offset };
  return { header, avatar };
}

/** lo + q / levels * (hi - lo) for one range over the whole section, through f. */
function dequantise({ q, range: [lo, hi] }, levels, f) {
  const out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) out[i] = f(lo + (q[i] / levels) * (hi - lo));
  return out;
}
