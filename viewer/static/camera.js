/*
 * The orbit camera: drag on the canvas to orbit (yaw, pitch), wheel to zoom, "Reset view" to go back; each
 * change becomes {"type": "camera", yaw, pitch, zoom}, at most CAMERA_MAX_PER_S messages a second (the last
 * position is always sent). The server renders the view; the page only asks for it. With client rendering
 * (camera.local) nothing is sent: client_render.js draws the view from these numbers on the next frame.
 */
import { sendJson } from "./connection.js";
import { resumeAudio } from "./clock.js";

const CAMERA_MAX_PER_S = 20;
const DEG_PER_PIXEL = 0.4;
const PITCH_LIMIT = 80;
const ZOOM_MIN = 0.5;
const ZOOM_MAX = 3;

const canvas = document.getElementById("view");

export const camera = { yaw: 0, pitch: 0, zoom: 1, lastSentMs: -Infinity, timer: null, drag: null, local: false };

/** Pointer and wheel listeners on the canvas. */
export function wireCamera() {
  canvas.addEventListener("pointerdown", onPointerDown);
  canvas.addEventListener("pointermove", onPointerMove);
  canvas.addEventListener("pointerup", onPointerUp);
  canvas.addEventListener("pointercancel", onPointerUp);
  canvas.addEventListener("wheel", onWheel, { passive: false });
}

function onPointerDown(ev) {
  resumeAudio();
  camera.drag = { id: ev.pointerId, x: ev.clientX, y: ev.clientY };
  canvas.classList.add("dragging");
  try {
    canvas.setPointerCapture(ev.pointerId);
  } catch (e) { /* synthetic events have no capturable pointer */ }
}

function onPointerMove(ev) {
  const d = camera.drag;
  if (!d || d.id !== ev.pointerId) return;
  camera.yaw = wrapDegrees(camera.yaw + (ev.clientX - d.x) * DEG_PER_PIXEL);
  camera.pitch = clamp(camera.pitch + (ev.clientY - d.y) * DEG_PER_PIXEL, -PITCH_LIMIT, PITCH_LIMIT);
  d.x = ev.clientX;
  d.y = ev.clientY;
  sendCameraThrottled();
}

function onPointerUp(ev) {
  if (!camera.drag || camera.drag.id !== ev.pointerId) return;
  camera.drag = null;
  canvas.classList.remove("dragging");
}

function onWheel(ev) {
  ev.preventDefault();
  camera.zoom = clamp(camera.zoom * Math.exp(-ev.deltaY * 0.001), ZOOM_MIN, ZOOM_MAX);
  sendCameraThrottled();
}

export function resetView() {
  Object.assign(camera, { yaw: 0, pitch: 0, zoom: 1 });
  sendCameraThrottled();
}

/** At most CAMERA_MAX_PER_S messages a second; the last position is always sent. */
function sendCameraThrottled() {
  if (camera.local) return;
  const wait = camera.lastSentMs + 1000 / CAMERA_MAX_PER_S - performance.now();
  if (wait <= 0) sendCamera();
  else if (camera.timer === null) camera.timer = setTimeout(sendCamera, wait);
}

/** Send the current view now (also on every new session: a reconnect keeps the view the user had). */
export function sendCamera() {
  clearTimeout(camera.timer);
  camera.timer = null;
  camera.lastSentMs = performance.now();
  sendJson({ type: "camera", yaw: camera.yaw, pitch: camera.pitch, zoom: camera.zoom });
}

function clamp(x, lo, hi) {
  return Math.max(lo, Math.min(hi, x));
}

function wrapDegrees(x) {
  return ((x + 180) % 360 + 360) % 360 - 180;
}
