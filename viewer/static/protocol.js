/*
 * The binary wire format of docs/protocol.md, version 1 (viewer/protocol.py is the server's side):
 * outgoing "audio" messages (PCM16 mono at the source's sample rate) and incoming "frame" messages
 * (index, pts, server latency, flags, echoed 16 kHz audio, JPEG), or, with client rendering, "motion" messages
 * (the same timing fields, mu-law 16 kHz audio, the control particles' motion and the limb bones' rotations).
 * Pure functions, no state.
 */
export const PROTOCOL_VERSION = 1;
const KIND_AUDIO = 1;
const KIND_FRAME = 2;
export const KIND_MOTION = 3;
const MOTION_HEADER_BYTES = 32;
const FLAG_BONES = 2;
const FLAG_DELTAS = 4;
export const FORMAT_JPEG = 1;
const AUDIO_HEADER_BYTES = 12;
const FRAME_HEADER_BYTES = 24;
const FLAG_SPEAKING = 1;

export function encodeAudio(int16, sampleRate, seq) {
  const buf = new ArrayBuffer(AUDIO_HEADER_BYTES + 2 * int16.length);
  const dv = new DataView(buf);
  dv.setUint8(0, 0x41); dv.setUint8(1, 0x41);           // "AA"
  dv.setUint8(2, PROTOCOL_VERSION);
  dv.setUint8(3, KIND_AUDIO);
  dv.setUint32(4, sampleRate, true);
  dv.setUint32(8, seq >>> 0, true);
  for (let i = 0; i < int16.length; i++) dv.setInt16(AUDIO_HEADER_BYTES + 2 * i, int16[i], true);
  return buf;
}

export function parseFrame(buf) {
  if (buf.byteLength < FRAME_HEADER_BYTES) throw new Error(`frame: ${buf.byteLength} bytes, header is 24`);
  const dv = new DataView(buf);
  if (dv.getUint8(0) !== 0x41 || dv.getUint8(1) !== 0x41) throw new Error("frame: bad magic");
  if (dv.getUint8(2) !== PROTOCOL_VERSION) throw new Error(`frame: version ${dv.getUint8(2)}, expected 1`);
  if (dv.getUint8(3) !== KIND_FRAME) throw new Error(`frame: kind ${dv.getUint8(3)}, expected 2`);
  const n = dv.getUint16(22, true);
  const imageStart = FRAME_HEADER_BYTES + 2 * n;
  if (buf.byteLength < imageStart) throw new Error(`frame: ${n} audio samples do not fit`);
  const audio = new Int16Array(n);
  for (let i = 0; i < n; i++) audio[i] = dv.getInt16(FRAME_HEADER_BYTES + 2 * i, true);
  return {
    index: dv.getUint32(4, true),
    pts: dv.getFloat64(8, true),
    latencyMs: dv.getUint32(16, true) / 1000,
    speaking: (dv.getUint8(20) & FLAG_SPEAKING) !== 0,
    format: dv.getUint8(21),
    audio,
    image: new Uint8Array(buf, imageStart),
  };
}

/** The kind byte of a binary message from the server (KIND_MOTION or the frame kind). */
export function messageKind(buf) {
  return buf.byteLength >= 4 ? new DataView(buf).getUint8(3) : 0;
}

// G.711 mu-law decoding table (viewer/protocol.py mulaw_decode): code -> int16
const MULAW = new Int16Array(256);
for (let code = 0; code < 256; code++) {
  const c = ~code & 0xff;
  const exponent = (c >> 4) & 7;
  const mag = (((c & 0x0f) << 3) + 0x84 << exponent) - 0x84;
  MULAW[code] = c & 0x80 ? -mag : mag;
}

/** One motion message -> { index, pts, latencyMs, speaking, audio Int16Array, translation Float32Array(K*3),
 * bones Float32Array((B+1)*4) | null, deltas Float32Array(K*10) | null }. */
export function parseMotion(buf) {
  if (buf.byteLength < MOTION_HEADER_BYTES) throw new Error(`motion: ${buf.byteLength} bytes, header is 32`);
  const dv = new DataView(buf);
  if (dv.getUint8(0) !== 0x41 || dv.getUint8(1) !== 0x41) throw new Error("motion: bad magic");
  if (dv.getUint8(2) !== PROTOCOL_VERSION) throw new Error(`motion: version ${dv.getUint8(2)}, expected 1`);
  if (dv.getUint8(3) !== KIND_MOTION) throw new Error(`motion: kind ${dv.getUint8(3)}, expected 3`);
  const flags = dv.getUint8(20);
  const n = dv.getUint16(22, true);
  const K = dv.getUint16(24, true);
  const nb = dv.getUint16(26, true);
  const scale = dv.getFloat32(28, true) / 32767;
  const want = MOTION_HEADER_BYTES + n + 6 * K + (flags & FLAG_BONES ? 8 * nb : 0) + (flags & FLAG_DELTAS ? 20 * K : 0);
  if (buf.byteLength !== want) throw new Error(`motion: ${buf.byteLength} bytes, its header says ${want}`);
  let at = MOTION_HEADER_BYTES;
  const audio = new Int16Array(n);
  for (let i = 0; i < n; i++) audio[i] = MULAW[dv.getUint8(at + i)];
  at += n;
  const translation = new Float32Array(3 * K);
  for (let i = 0; i < 3 * K; i++) translation[i] = dv.getInt16(at + 2 * i, true) * scale;
  at += 6 * K;
  let bones = null;
  let deltas = null;
  if (flags & FLAG_BONES) {
    bones = new Float32Array(4 * nb);
    for (let i = 0; i < 4 * nb; i++) bones[i] = dv.getInt16(at + 2 * i, true) / 32767;
    at += 8 * nb;
  }
  if (flags & FLAG_DELTAS) {
    deltas = new Float32Array(10 * K);
    for (let i = 0; i < 10 * K; i++) deltas[i] = halfToFloat(dv.getUint16(at + 2 * i, true));
  }
  return {
    index: dv.getUint32(4, true), pts: dv.getFloat64(8, true), latencyMs: dv.getUint32(16, true) / 1000,
    speaking: (flags & FLAG_SPEAKING) !== 0, audio, translation, bones, deltas,
  };
}

function halfToFloat(h) {
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  const v = e === 0 ? m * 2 ** -24 : e === 31 ? (m ? NaN : Infinity) : (1 + m / 1024) * 2 ** (e - 15);
  return h & 0x8000 ? -v : v;
}

export function floatToInt16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    out[i] = Math.round(s * 32767);
  }
  return out;
}
