/*
 * Sound to the server: samples (an audio file, or window.aa.sendSamples) sent as 40 ms chunks paced in real
 * time and then {"type": "end"}; or the microphone, captured by an AudioWorklet (a ScriptProcessor where there
 * is none) in 40 ms chunks at the device's own sample rate, muting the echo while it is on. One source at a
 * time: `input.sender` (a paced send in progress) or `input.mic`.
 */
import { isOpen, sendAudioChunk, sendJson } from "./connection.js";
import { play, resumeAudio } from "./clock.js";
import { reportError } from "./status.js";

const CHUNK_S = 0.04;              // outgoing audio chunk length

export const input = { sender: null, mic: null };

// ---- paced samples (files, automation) -----------------------------------------------------------------
/** Send samples as 40 ms chunks paced in real time, then {"type": "end"}. Returns { promise, cancel }. */
function startPacedSender(samples, sampleRate) {
  const chunk = Math.max(1, Math.round(sampleRate * CHUNK_S));
  const start = performance.now();
  let next = 0;
  let timer = null;
  let settle = null;
  const promise = new Promise((resolve, reject) => { settle = { resolve, reject }; });

  function tick() {
    timer = null;
    try {
      while (next < samples.length && start + (next / sampleRate) * 1000 <= performance.now()) {
        sendAudioChunk(samples.subarray(next, next + chunk), sampleRate);
        next += chunk;
      }
    } catch (e) {
      settle.reject(e);
      return;
    }
    if (next >= samples.length) {
      sendJson({ type: "end" });
      settle.resolve({ chunks: Math.ceil(samples.length / chunk), seconds: samples.length / sampleRate });
      return;
    }
    const target = start + (next / sampleRate) * 1000;
    timer = setTimeout(tick, Math.max(0, target - performance.now()));
  }

  function cancel() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    settle.reject(new Error("stopped"));
  }

  tick();
  return { promise, cancel };
}

/** window.aa.sendSamples: cancels a send in progress; resolves { chunks, seconds } once all is sent. */
export function sendSamples(samples, sampleRate) {
  if (!(samples instanceof Float32Array)) samples = Float32Array.from(samples);
  if (!Number.isInteger(sampleRate) || sampleRate < 8000 || sampleRate > 192000) {
    return Promise.reject(new Error(`sampleRate: expected an integer in 8000..192000, got ${sampleRate}`));
  }
  if (input.sender) input.sender.cancel();
  const sender = startPacedSender(samples, sampleRate);
  input.sender = sender;
  const clear = () => { if (input.sender === sender) input.sender = null; };
  sender.promise.then(clear, clear);
  return sender.promise;
}

/** Cancel a paced send in progress (its promise rejects with "stopped"). */
export function cancelSender() {
  if (input.sender) input.sender.cancel();
  input.sender = null;
}

export async function sendFile(file) {
  resumeAudio();
  try {
    const decoded = await play.ctx.decodeAudioData(await file.arrayBuffer());
    await sendSamples(mixToMono(decoded), decoded.sampleRate);
  } catch (e) {
    if (e.message !== "stopped") reportError(`${file.name}: ${e.message || e}`);
  }
}

function mixToMono(audioBuffer) {
  const out = new Float32Array(audioBuffer.length);
  for (let c = 0; c < audioBuffer.numberOfChannels; c++) {
    const ch = audioBuffer.getChannelData(c);
    for (let i = 0; i < out.length; i++) out[i] += ch[i] / audioBuffer.numberOfChannels;
  }
  return out;
}

// ---- microphone ------------------------------------------------------------------------------------
// The worklet batches 40 ms of the mic's first channel and posts it to the page, which sends it on.
const CAPTURE_WORKLET = `
  class CaptureProcessor extends AudioWorkletProcessor {
    constructor() {
      super();
      this.chunk = new Float32Array(Math.round(sampleRate * ${CHUNK_S}));
      this.filled = 0;
    }
    process(inputs) {
      const ch = inputs[0] && inputs[0][0];
      for (let i = 0; ch && i < ch.length; i++) {
        this.chunk[this.filled++] = ch[i];
        if (this.filled === this.chunk.length) {
          this.port.postMessage(this.chunk.slice(0));
          this.filled = 0;
        }
      }
      return true;
    }
  }
  registerProcessor("aa-capture", CaptureProcessor);
`;

export async function startMic() {
  resumeAudio();
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error("microphone needs a secure page (https:// or localhost)");
  }
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
  });
  const ctx = play.ctx;
  const source = ctx.createMediaStreamSource(stream);
  const sink = ctx.createGain();                 // keeps the capture node pulled, silently
  sink.gain.value = 0;
  sink.connect(ctx.destination);
  const node = ctx.audioWorklet ? await workletCapture(ctx) : scriptProcessorCapture(ctx);
  source.connect(node);
  node.connect(sink);
  play.out.gain.value = 0;                       // don't play the mic back into itself
  input.mic = { stream, source, node, sink };
}

async function workletCapture(ctx) {
  const url = URL.createObjectURL(new Blob([CAPTURE_WORKLET], { type: "text/javascript" }));
  try {
    await ctx.audioWorklet.addModule(url);
  } finally {
    URL.revokeObjectURL(url);
  }
  const node = new AudioWorkletNode(ctx, "aa-capture", { numberOfInputs: 1, numberOfOutputs: 1 });
  node.port.onmessage = (ev) => sendMicChunk(ev.data, ctx.sampleRate);
  return node;
}

function scriptProcessorCapture(ctx) {
  const node = ctx.createScriptProcessor(2048, 1, 1);
  const chunk = new Float32Array(Math.round(ctx.sampleRate * CHUNK_S));
  let filled = 0;
  node.onaudioprocess = (ev) => {
    const ch = ev.inputBuffer.getChannelData(0);
    for (let i = 0; i < ch.length; i++) {
      chunk[filled++] = ch[i];
      if (filled === chunk.length) {
        sendMicChunk(chunk.slice(0), ctx.sampleRate);
        filled = 0;
      }
    }
  };
  return node;
}

function sendMicChunk(samples, sampleRate) {
  if (!input.mic || !isOpen()) return;
  sendAudioChunk(samples, sampleRate);
}

export function stopMic() {
  const mic = input.mic;
  if (!mic) return;
  input.mic = null;
  mic.source.disconnect();
  mic.node.disconnect();
  mic.sink.disconnect();
  mic.stream.getTracks().forEach((t) => t.stop());
  if (play.out) play.out.gain.value = 1;
  sendJson({ type: "end" });
}
