/*
 * Frames from the server to the canvas: each binary "frame" message is parsed, checked against the clock
 * (clock.js) and queued by index; its JPEG is kept until DECODE_AHEAD_S before it is due (a TTS burst can
 * queue many seconds of frames), then decoded with createImageBitmap; every animation frame the newest frame
 * that is due is drawn on <canvas id="view">, scaled to fit. Frames more than a period late are dropped and
 * counted; resetPlayback drops everything queued after a barge-in or a new session.
 */
import { FORMAT_JPEG, parseFrame } from "./protocol.js";
import { stats, recent, reportError } from "./status.js";
import {
  FRAME_PERIOD_S, clockNow, dropAnchor, dueTime, ensureAnchor, onTime, scheduleEcho, stopScheduledAudio, trimAnchor,
} from "./clock.js";

const DECODE_AHEAD_S = 0.3;        // JPEGs are decoded this long before they are due

export const canvas = document.getElementById("view");
const ctx2d = canvas.getContext("2d");

const display = {
  queue: [],                                   // received frames not drawn yet, by index
  minIndex: 0,                                 // frames below this (before a barge-in) are discarded
  lastBitmap: null,                            // the picture on the canvas (repainted on resize)
};

/** Drop everything queued and scheduled, and re-anchor on the first frame >= minIndex. */
export function resetPlayback(minIndex) {
  stats.discarded += display.queue.length;
  for (const f of display.queue) discard(f, false);
  display.queue = [];
  stopScheduledAudio();
  dropAnchor();
  display.minIndex = minIndex;
}

// ---- frames in -------------------------------------------------------------------------------------
export function onFrameMessage(buf) {
  let frame;
  try {
    frame = parseFrame(buf);
  } catch (e) {
    reportError(e.message);
    return;
  }
  if (frame.format !== FORMAT_JPEG) {
    reportError(`frame ${frame.index}: image format ${frame.format} is not JPEG (1)`);
    return;
  }
  if (!admitFrame(frame, display.minIndex)) return;
  dropStale(clockNow());             // a hidden tab runs no animation frames: don't let the queue grow
  enqueue(frame);
}

/** A frame (or, with client rendering, a motion message) just parsed: count it, drop it if it was queued before
 * a barge-in (index < minIndex) or arrived too late to show, else anchor the clock on it and schedule its audio
 * at its due time. True when it is to be shown. */
export function admitFrame(frame, minIndex) {
  stats.framesReceived++;
  stats.lastIndex = frame.index;
  if (frame.speaking) {
    stats.speakingFrames++;
    recent.latencies.push([performance.now(), frame.latencyMs]);
  }
  if (frame.index < minIndex) {                             // queued before a barge-in
    stats.discarded++;
    return false;
  }
  ensureAnchor(frame.pts);
  if (!onTime(frame)) return false;
  trimAnchor(frame);
  scheduleEcho(frame, dueTime(frame));
  return true;
}

function decode(frame) {
  frame.decoding = true;
  createImageBitmap(new Blob([frame.image], { type: "image/jpeg" }))
    .then((bitmap) => {
      if (frame.discarded) bitmap.close();
      else frame.bitmap = bitmap;
    })
    .catch((e) => {
      frame.failed = true;
      reportError(`frame ${frame.index}: JPEG decode failed (${e.message || e})`);
    });
}

function dropStale(now) {
  while (display.queue.length > 0 && now - dueTime(display.queue[0]) > FRAME_PERIOD_S) {
    discard(display.queue.shift(), true);
  }
}

function enqueue(frame) {
  frame.bitmap = null;
  let i = display.queue.length;
  while (i > 0 && display.queue[i - 1].index > frame.index) i--;
  display.queue.splice(i, 0, frame);
}

// ---- drawing ---------------------------------------------------------------------------------------
/** Draw due frames on every animation frame, forever. */
export function drawLoop() {
  drawDueFrame();
  requestAnimationFrame(drawLoop);
}

/** Show the newest frame that is due; frames due more than a period ago are dropped as late. */
function drawDueFrame() {
  const queue = display.queue;
  stats.queued = queue.length;
  if (queue.length === 0) return;
  ensureAnchor(queue[0].pts);
  const now = clockNow();
  decodeUpcoming(now);
  let show = null;
  while (queue.length > 0 && dueTime(queue[0]) <= now) {
    const f = queue[0];
    const late = now - dueTime(f);
    if (!f.bitmap && !f.failed && late <= FRAME_PERIOD_S) break;   // still decoding, not late yet
    queue.shift();
    if (show !== null) discard(show, true);
    show = f;
    if (!f.bitmap || late > FRAME_PERIOD_S) {
      discard(f, !f.failed);
      show = null;
    }
  }
  if (show !== null) drawFrame(show);
}

function decodeUpcoming(now) {
  for (const f of display.queue) {
    if (dueTime(f) - now > DECODE_AHEAD_S) break;
    if (!f.decoding) decode(f);
  }
}

function discard(frame, countLate) {
  frame.discarded = true;
  if (frame.bitmap) frame.bitmap.close();
  frame.bitmap = null;
  if (countLate) stats.droppedLate++;
}

function drawFrame(frame) {
  if (display.lastBitmap) display.lastBitmap.close();
  display.lastBitmap = frame.bitmap;
  frame.bitmap = null;
  paint();
  stats.framesDrawn++;
  recent.draws.push(performance.now());
}

/** Repaint the last picture, scaled to fit the canvas (also on window resize). */
export function paint() {
  resizeCanvas();
  ctx2d.fillStyle = "#1d1f23";
  ctx2d.fillRect(0, 0, canvas.width, canvas.height);
  const bmp = display.lastBitmap;
  if (!bmp) return;
  const s = Math.min(canvas.width / bmp.width, canvas.height / bmp.height);
  const w = bmp.width * s;
  const h = bmp.height * s;
  ctx2d.drawImage(bmp, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
}

function resizeCanvas() {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
}
