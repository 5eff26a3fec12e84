/*
 * The binary wire format of docs/protocol.md, version 1 (viewer/protocol.py is the server's side):
 * outgoing "audio" messages (PCM16 mono at the source's sample rate) and incoming "frame" messages
 * (index, pts, server latency, flags, echoed 16 kHz audio, JPEG). Pure functions, no state.
 */
export const PROTOCOL_VERSION = 1;
const KIND_AUDIO = 1;
const KIND_FRAME = 2;
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

export function floatToInt16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    out[i] = Math.round(s * 32767);
  }
  return out;
}
