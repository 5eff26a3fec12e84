/*
 * The playback clock and the sound: when each frame is due, and its echoed audio scheduled to play then.
 *
 * The clock is the AudioContext's while it runs, else performance.now() (a browser without a user gesture
 * keeps audio suspended; frames still play). A frame with timestamp pts is due at t0 + pts. t0 is anchored on
 * the first frame with a lead of LEAD_S (the jitter buffer), and again after "interrupted" (dropAnchor), after
 * the clock changes, or when frames keep arriving late. While the avatar idles and frames keep arriving well
 * ahead of time, t0 is trimmed a little per frame, so the view (and the orbit) does not lag more than the lead.
 *
 * Each frame's 16 kHz audio becomes an AudioBuffer played by an AudioBufferSourceNode started at its due time
 * on the AudioContext clock, through one gain node (`play.out`, muted while the microphone is on).
 */
import { stats, reportError } from "./status.js";

export const FRAME_PERIOD_S = 1 / 25;
const ECHO_RATE = 16000;           // the frames' echoed audio
const LEAD_S = 0.15;               // jitter buffer: a frame is shown this long after it is anchored
const FAR_BEHIND_S = 1.0;          // one frame this late: re-anchor at once
const LATE_STREAK_REANCHOR = 5;    // this many late frames in a row: re-anchor
const TRIM_WINDOW = 25;            // idle frames whose earliness decides a trim
const TRIM_STEP_S = 0.004;         // per idle frame (10% faster) while all of them came > LEAD + a period early

export const play = {
  ctx: null, out: null, sources: new Set(),    // audio output (the microphone shares the AudioContext)
  anchor: null,                                // { t0, audioClock }: frame pts p is due at t0 + p
  lateStreak: 0, slack: [],
};

// ---- the clock ---------------------------------------------------------------------------------------
export function audioRunning() {
  return play.ctx !== null && play.ctx.state === "running";
}

export function clockNow() {
  return audioRunning() ? play.ctx.currentTime : performance.now() / 1000;
}

function anchorAt(pts) {
  play.anchor = { t0: clockNow() + LEAD_S - pts, audioClock: audioRunning() };
  play.lateStreak = 0;
  play.slack = [];
}

/** The next frame anchors the clock afresh. */
export function dropAnchor() {
  play.anchor = null;
}

export function ensureAnchor(pts) {
  if (play.anchor === null || play.anchor.audioClock !== audioRunning()) anchorAt(pts);
}

export function dueTime(frame) {
  return play.anchor.t0 + frame.pts;
}

/** False (and counted) when the frame is already more than a frame period late; re-anchors when frames
 * keep coming late, so a server that stalled and resumed in real time is not dropped forever. */
export function onTime(frame) {
  const late = clockNow() - dueTime(frame);
  if (late > FAR_BEHIND_S || (late > FRAME_PERIOD_S && play.lateStreak + 1 >= LATE_STREAK_REANCHOR)) {
    anchorAt(frame.pts);
    return true;
  }
  if (late > FRAME_PERIOD_S) {
    play.lateStreak++;
    stats.droppedLate++;
    return false;
  }
  play.lateStreak = 0;
  return true;
}

/** Idle frames that all arrived more than LEAD + a period ahead: show them a little sooner. */
export function trimAnchor(frame) {
  play.slack.push(dueTime(frame) - clockNow());
  if (play.slack.length > TRIM_WINDOW) play.slack.shift();
  if (frame.speaking || play.slack.length < TRIM_WINDOW || echoPending()) return;
  if (Math.min(...play.slack) > LEAD_S + FRAME_PERIOD_S) {
    play.anchor.t0 -= TRIM_STEP_S;
    play.slack = play.slack.map((s) => s - TRIM_STEP_S);
  }
}

// ---- audio output ------------------------------------------------------------------------------------
/** Create the AudioContext (suspended until a user gesture); onStateChange runs now and on every change. */
export function initAudio(onStateChange) {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx) return;
  play.ctx = new Ctx();
  play.out = play.ctx.createGain();
  play.out.connect(play.ctx.destination);
  play.ctx.onstatechange = onStateChange;
  onStateChange();
}

export function resumeAudio() {
  if (play.ctx && play.ctx.state === "suspended") play.ctx.resume().catch((e) => reportError(`audio: ${e.message}`));
}

/** Play the frame's echoed audio at `when` on the AudioContext clock (its tail, if that is already past). */
export function scheduleEcho(frame, when) {
  if (!audioRunning() || frame.audio.length === 0 || (!frame.speaking && isSilent(frame.audio))) return;
  const ctx = play.ctx;
  const buffer = ctx.createBuffer(1, frame.audio.length, ECHO_RATE);
  const ch = buffer.getChannelData(0);
  for (let i = 0; i < frame.audio.length; i++) ch[i] = frame.audio[i] / 32768;
  const src = ctx.createBufferSource();
  src.buffer = buffer;
  src.connect(play.out);
  const late = ctx.currentTime - when;
  if (late >= buffer.duration) return;
  if (late > 0) src.start(ctx.currentTime, late);
  else src.start(when);
  src.startTime = when;
  play.sources.add(src);
  src.onended = () => play.sources.delete(src);
}

function echoPending() {
  const now = clockNow();
  for (const src of play.sources) if (src.startTime + src.buffer.duration > now) return true;
  return false;
}

function isSilent(int16) {
  for (let i = 0; i < int16.length; i++) if (int16[i] !== 0) return false;
  return true;
}

/** Cancel the echoes that have not started yet (the one playing now finishes). */
export function stopScheduledAudio() {
  const now = audioRunning() ? play.ctx.currentTime : Infinity;
  for (const src of play.sources) {
    if (src.startTime > now) {
      src.stop();
      play.sources.delete(src);
    }
  }
}
