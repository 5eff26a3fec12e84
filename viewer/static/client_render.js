/*
 * Client-side rendering (a welcome with "render": "client"): the page downloads the packed avatar once
 * (avatar_codec.js), then each binary "motion" message (protocol.js parseMotion) is queued on the same clock as
 * JPEG frames (clock.js: its mu-law audio is scheduled to play when the frame is due) and, once due, handed to
 * the WebGL2 splatter (splat_gl.js), which deforms and draws the avatar at the canvas's own size. The orbit
 * camera (camera.js: yaw, pitch, zoom) is applied here, locally, with no server round trip: a redraw happens
 * on every animation frame in which the motion, the camera or the canvas size changed.
 *
 * The camera reproduces the server's (engine/runtime.py set_orbit + engine/render/camera.py look_at, and the
 * photo's intrinsics fitted into the frame with engine/avatar/bundle.py PhotoCamera.scaled_K), so the server
 * renders the same picture of the same motion (tests/test_client_mode.py).
 */
import { fetchAvatar } from "./avatar_codec.js";
import { parseMotion } from "./protocol.js";
import { stats, recent, reportError } from "./status.js";
import { clockNow, dueTime, ensureAnchor } from "./clock.js";
import { admitFrame } from "./frames.js";
import { SplatRenderer } from "./splat_gl.js";

const MAX_SIDE = 1280;            // the drawing buffer's longer side at most (a 4K screen splats at this size)
const PITCH_LIMIT = 80;           // degrees, as the server clamps it

export const glCanvas = document.getElementById("view-gl");

export const client = {
  active: false, renderer: null, header: null, queue: [], minIndex: 0, frame: null, drawnKey: "",
  motionFrames: 0, avatarBytes: 0, loadMs: null, drawMs: null,
};

/** Switch to client rendering for a new session: fetch the avatar (cached by ETag), make the renderer. */
export async function startClientRendering(welcome) {
  client.active = true;
  client.header = null;                         // nothing is drawn until this session's avatar is in
  client.frame = null;
  glCanvas.hidden = false;
  stats.render = "client (loading avatar)";
  const t0 = performance.now();
  const { header, avatar } = await fetchAvatar(welcome.avatar);
  if (client.renderer === null) client.renderer = new SplatRenderer(glCanvas);
  client.renderer.setAvatar(avatar);
  client.header = header;
  client.avatarBytes = welcome.avatar_bytes;
  client.loadMs = performance.now() - t0;
  client.drawnKey = "";
  stats.render = "client (WebGL2)";
}

/** Back to server-rendered frames (a session that did not ask for client rendering). */
export function stopClientRendering() {
  client.active = false;
  glCanvas.hidden = true;
  client.queue = [];
  stats.render = "server";
}

/** Drop queued motion (a barge-in or a new session): frames below minIndex are discarded. */
export function resetClientPlayback(minIndex) {
  stats.discarded += client.queue.length;
  client.queue = [];
  client.minIndex = minIndex;
}

// ---- motion in -------------------------------------------------------------------------------------
export function onMotionMessage(buf) {
  let frame;
  try {
    frame = parseMotion(buf);
  } catch (e) {
    reportError(e.message);
    return;
  }
  if (!admitFrame(frame, client.minIndex)) return;
  let i = client.queue.length;
  while (i > 0 && client.queue[i - 1].index > frame.index) i--;
  client.queue.splice(i, 0, frame);
}

// ---- drawing ---------------------------------------------------------------------------------------
/** Every animation frame: take the newest due motion, then redraw if motion, camera or size changed. */
export function clientDraw(camera) {
  if (!client.active || client.header === null) return;
  const queue = client.queue;
  stats.queued = queue.length;
  if (queue.length > 0) {
    ensureAnchor(queue[0].pts);
    const now = clockNow();
    let take = null;
    while (queue.length > 0 && dueTime(queue[0]) <= now) {
      const f = queue.shift();
      if (take !== null) stats.droppedLate++;        // a newer frame is due too: this one is never shown
      take = f;
    }
    if (take !== null) {
      client.frame = take;
      client.renderer.setFrame(take);
      client.motionFrames++;
      stats.framesDrawn++;
    }
  }
  const size = canvasSize();
  const key = `${client.frame ? client.frame.index : -1} ${camera.yaw} ${camera.pitch} ${camera.zoom} ${size}`;
  if (key === client.drawnKey) return;
  client.drawnKey = key;
  const t0 = performance.now();
  client.renderer.render(orbitCamera(client.header, camera, size[0], size[1]));
  client.drawMs = performance.now() - t0;
  recent.draws.push(performance.now());
}

function canvasSize() {
  const dpr = window.devicePixelRatio || 1;
  let w = Math.max(16, Math.round(glCanvas.clientWidth * dpr));
  let h = Math.max(16, Math.round(glCanvas.clientHeight * dpr));
  const s = Math.min(1, MAX_SIDE / Math.max(w, h));
  return [Math.round(w * s), Math.round(h * s)];
}

// ---- the camera ------------------------------------------------------------------------------------
/** The server's orbit camera (set_orbit) for a width x height image: { viewmat (row-major world -> camera,
 * OpenCV axes), fx, fy, cx, cy, width, height, background }. */
export function orbitCamera(header, { yaw, pitch, zoom }, width, height) {
  const pivot = header.pivot;
  const p = (Math.max(-PITCH_LIMIT, Math.min(PITCH_LIMIT, pitch)) * Math.PI) / 180;
  const a = (yaw * Math.PI) / 180;
  const d = pivot[2] / zoom;
  const eye = [pivot[0] + d * Math.sin(a) * Math.cos(p), pivot[1] - d * Math.sin(p),
               pivot[2] - d * Math.cos(a) * Math.cos(p)];
  const c = header.camera;
  const s = Math.min(width / c.width, height / c.height);
  return { viewmat: lookAt(eye, pivot), fx: c.fx * s, fy: c.fy * s, cx: c.cx * s + (width - s * c.width) / 2,
           cy: c.cy * s + (height - s * c.height) / 2, width, height, background: 1.0 };
}

/** World -> camera [16] row-major for a camera at eye looking at target, world up -y (engine look_at). */
export function lookAt(eye, target) {
  const up = [0, -1, 0];
  const z = normalize(sub(target, eye));
  const x = normalize(cross(z, up));
  const y = cross(z, x);
  const t = [-dot(x, eye), -dot(y, eye), -dot(z, eye)];
  return new Float32Array([...x, t[0], ...y, t[1], ...z, t[2], 0, 0, 0, 1]);
}

const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const normalize = (a) => { const l = Math.hypot(...a) || 1; return [a[0] / l, a[1] / l, a[2] / l]; };
