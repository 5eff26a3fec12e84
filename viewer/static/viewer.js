/*
 * AudioAvatar browser viewer (plain JS ES modules, no build step); this one is the page: the overlay text,
 * the buttons, the listeners, window.aa, and the start. Wire format: docs/protocol.md, version 1.
 *
 * Where the data goes (and which module does it):
 *   microphone / audio file / window.aa.sendSamples                                               input.js
 *       -> PCM16 mono chunks of 40 ms at the source's own sample rate -> binary "audio" messages  protocol.js
 *       -> ws /ws (after GET /health, hello, welcome; reconnects)                                 connection.js
 *   ws /ws binary "frame" messages -> parseFrame -> { index, pts, echoed 16 kHz audio, JPEG }     protocol.js
 *       audio -> AudioBuffer (16 kHz) -> AudioBufferSourceNode started at t0 + pts on the clock   clock.js
 *       JPEG  -> kept until shortly before it is due -> createImageBitmap -> drawn on the canvas  frames.js
 *   or, with client rendering (?render=client, or the server's --render client):
 *   GET /avatar.splat once -> the avatar's Gaussians, skinning and bones                          avatar_codec.js
 *   ws /ws binary "motion" messages -> parseMotion -> { index, pts, mu-law audio, motion }        protocol.js
 *       audio as above; motion, once due -> WebGL2 deform + splat at the canvas's size, redrawn
 *       at once when the orbit camera moves (no server round trip)        client_render.js, splat_gl.js
 *   mouse drag / wheel -> {"type": "camera", yaw, pitch, zoom}, throttled                         camera.js
 *   every second -> {"type": "stats"}                                                             connection.js
 *       the reply and the local counters (status.js) -> the overlay                               this file
 *
 * Automation hook: window.aa = { stats, sendSamples(float32Array, sampleRate) -> Promise, canvas, camera, client }
 * (client: client_render.js's state; client.renderer.readPixels() gives the last drawn picture).
 */
import { stats, recent, pruneRecent, reportError } from "./status.js";
import { connect, sendJson } from "./connection.js";
import { play, audioRunning, initAudio, resumeAudio } from "./clock.js";
import { canvas, drawLoop, onFrameMessage, paint, resetPlayback } from "./frames.js";
import { camera, resetView, sendCamera, wireCamera } from "./camera.js";
import { input, cancelSender, sendFile, sendSamples, startMic, stopMic } from "./input.js";
import { KIND_MOTION, messageKind } from "./protocol.js";
import {
  client, clientDraw, glCanvas, onMotionMessage, resetClientPlayback, startClientRendering, stopClientRendering,
} from "./client_render.js";

const OVERLAY_MS = 250;

const overlay = document.getElementById("overlay");

// ---- overlay ---------------------------------------------------------------------------------------
function median(values) {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function updateOverlay() {
  pruneRecent(performance.now());
  const p50 = median(recent.latencies.map((x) => x[1]));
  const session = stats.session ? ` session ${stats.session}` +
    (client.active ? "" : ` ${stats.width}x${stats.height}`) : "";
  const drawn = client.active && client.drawMs !== null
    ? [`render   ${stats.render}  ${glCanvas.width}x${glCanvas.height}  ` +
       `draw ${client.drawMs.toFixed(1)} ms  avatar ${(client.avatarBytes / 1e6).toFixed(2)} MB`]
    : [`render   ${stats.render}`];
  const audio = play.ctx ? play.ctx.state : "unavailable";
  overlay.textContent = [
    `state    ${stats.state}${session}`,
    `fps      ${recent.draws.length}${stats.serverFps === null ? "" : ` (server ${stats.serverFps.toFixed(1)})`}`,
    ...drawn,
    `latency  ${p50 === null ? "-" : p50.toFixed(1) + " ms"} (server p50, speech)`,
    `dropped  client ${stats.droppedLate}  server ${stats.serverDropped}`,
    `frames   received ${stats.framesReceived}  drawn ${stats.framesDrawn}  queued ${stats.queued}`,
    `audio    ${audio}${input.mic ? "  mic on" : ""}${input.sender ? "  sending" : ""}`,
    ...(stats.gesture ? [`gesture  ${stats.gesture}`] : []),
  ].join("\n");
}

// ---- buttons ---------------------------------------------------------------------------------------
function updateSoundButton() {
  document.getElementById("start-audio").hidden = audioRunning();
}

function updateMicButton() {
  const b = document.getElementById("mic");
  b.classList.toggle("active", input.mic !== null);
  b.textContent = input.mic ? "Microphone off" : "Microphone";
}

async function toggleMic() {
  if (input.mic) {
    stopMic();
  } else {
    if (input.sender) input.sender.cancel();
    try {
      await startMic();
    } catch (e) {
      reportError(`microphone: ${e.message || e}`);
    }
  }
  updateMicButton();
}

function stopSending() {
  cancelSender();
  stopMic();
  updateMicButton();
}

function interrupt() {
  stopSending();
  sendJson({ type: "interrupt" });
}

// ---- page wiring -----------------------------------------------------------------------------------
function wire() {
  // browsers start audio only after a user gesture: any click or key press resumes it
  for (const type of ["pointerdown", "keydown"]) window.addEventListener(type, resumeAudio, { capture: true });
  document.getElementById("start-audio").addEventListener("click", resumeAudio);
  document.getElementById("mic").addEventListener("click", toggleMic);
  document.getElementById("stop").addEventListener("click", interrupt);
  document.getElementById("reset-view").addEventListener("click", resetView);
  document.getElementById("gesture").addEventListener("submit", (ev) => {
    ev.preventDefault();                       // a text command shapes the body over the next window
    const text = document.getElementById("gesture-text").value.trim();
    if (text) sendJson({ type: "gesture", text });
  });
  document.getElementById("file").addEventListener("change", (ev) => {
    const file = ev.target.files[0];
    ev.target.value = "";
    if (file) {
      stopSending();
      sendFile(file);
    }
  });
  wireCamera();
  window.addEventListener("resize", paint);
}

function main() {
  initAudio(updateSoundButton);
  wire();
  window.aa = { stats, sendSamples, canvas, camera, client };
  connect({
    frame: (buf) => (messageKind(buf) === KIND_MOTION ? onMotionMessage(buf) : onFrameMessage(buf)),
    welcome: (msg) => {
      resetPlayback(0);
      resetClientPlayback(0);
      camera.local = msg.render === "client";
      if (camera.local) {
        startClientRendering(msg).catch((e) => reportError(`client rendering: ${e.message || e}`));
      } else {
        stopClientRendering();
        sendCamera();                 // a reconnect keeps the view the user had
      }
    },
    interrupted: (minIndex) => {
      resetPlayback(minIndex);
      resetClientPlayback(minIndex);
    },
    closed: stopSending,
  });
  setInterval(updateOverlay, OVERLAY_MS);
  requestAnimationFrame(drawLoop);
  const clientLoop = () => {
    try {
      clientDraw(camera);
    } catch (e) {
      reportError(`client rendering: ${e.message || e}`);
      stopClientRendering();          // one report, not one per animation frame
    }
    requestAnimationFrame(clientLoop);
  };
  requestAnimationFrame(clientLoop);
}

main();
