/*
 * The websocket client: GET /health (while the server warms up the status line says "warming up" and the page
 * asks again every second), then ws /ws, {"type": "hello"} with the ?token= of the page URL, the server's
 * control messages (welcome, interrupted, stats, gesture, error), a stats poll every second, and reconnecting
 * with back-off unless the close code says retrying won't help. Outgoing: sendJson and sendAudioChunk.
 *
 * What the rest of the page does on these events comes in through connect(hooks):
 *   hooks.frame(arrayBuffer)     a binary message
 *   hooks.welcome(msg)           the session is open (stats.connected is already true); msg.render says
 *                                whether frames (server) or motion (client) will come
 *   hooks.interrupted(minIndex)  frames below minIndex were queued before a barge-in
 *   hooks.closed()               the socket closed (stats.connected is already false)
 */
import { PROTOCOL_VERSION, encodeAudio, floatToInt16 } from "./protocol.js";
import { stats, setState, reportError } from "./status.js";

const STATS_POLL_MS = 1000;
const RECONNECT_MS = [500, 1000, 2000, 5000];
const WARMING_POLL_MS = 1000;
const NO_RECONNECT_CODES = new Set([1002, 1008, 1009]);  // protocol, policy, too big: retrying won't help

const conn = { ws: null, seq: 0, attempts: 0, statsTimer: null, hooks: null };

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

/** Start connecting (and keep reconnecting); `hooks` as in the comment at the top. */
export function connect(hooks) {
  conn.hooks = hooks;
  checkHealth();
}

/** Ask /health first: while the server warms up (builds or loads its renderer) it refuses sessions with 503,
 * which a WebSocket cannot see, so the page says "warming up" and asks again until it is ready. */
function checkHealth() {
  setState("connecting");
  fetch("health", { cache: "no-store" })
    .then((r) => (r.ok ? r.json() : null))
    .catch(() => null)
    .then((health) => {
      if (health && health.status === "warming") {
        setState("warming up (the server is preparing its renderer)");
        setTimeout(checkHealth, WARMING_POLL_MS);
      } else {
        openSocket();               // a server without /health, or unreachable: the socket's close says why
      }
    });
}

function openSocket() {
  const ws = new WebSocket(socketUrl());
  ws.binaryType = "arraybuffer";
  conn.ws = ws;
  ws.onopen = () => sendHello(ws);
  ws.onmessage = (ev) => (typeof ev.data === "string" ? onControl(ev.data) : conn.hooks.frame(ev.data));
  ws.onclose = (ev) => onClose(ws, ev);
  ws.onerror = () => {};          // onclose follows with the code
}

function sendHello(ws) {
  const hello = { type: "hello", version: PROTOCOL_VERSION };
  const query = new URLSearchParams(location.search);
  const token = query.get("token");
  if (token) hello.token = token;
  const render = query.get("render");           // "client" | "server"; absent: the server's default
  if (render) hello.render = render;
  ws.send(JSON.stringify(hello));
  setState("hello sent");
}

function onClose(ws, ev) {
  if (conn.ws !== ws) return;
  conn.ws = null;
  stats.connected = false;
  clearInterval(conn.statsTimer);
  conn.hooks.closed();
  setState(`closed (${ev.code}${ev.reason ? " " + ev.reason : ""})`);
  if (NO_RECONNECT_CODES.has(ev.code)) return;
  const delay = RECONNECT_MS[Math.min(conn.attempts, RECONNECT_MS.length - 1)];
  conn.attempts++;
  setTimeout(checkHealth, delay);
}

export function isOpen() {
  return conn.ws !== null && conn.ws.readyState === WebSocket.OPEN && stats.connected;
}

/** A control message; dropped while no session is open. */
export function sendJson(msg) {
  if (isOpen()) conn.ws.send(JSON.stringify(msg));
}

/** Float samples in -1..1 as one binary "audio" message; throws "not connected" while no session is open. */
export function sendAudioChunk(float32, sampleRate) {
  if (!isOpen()) throw new Error("not connected");
  conn.ws.send(encodeAudio(floatToInt16(float32), sampleRate, conn.seq++));
}

// ---- control messages from the server --------------------------------------------------------------
function onControl(text) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch (e) {
    reportError(`bad JSON from server: ${e.message}`);
    return;
  }
  if (msg.type === "welcome") onWelcome(msg);
  else if (msg.type === "interrupted") onInterrupted(msg);
  else if (msg.type === "stats") onStats(msg);
  else if (msg.type === "gesture") stats.gesture = `${msg.text} (${msg.frames} frames)`;
  else if (msg.type === "error") reportError(`server: ${msg.message}${msg.fatal ? " (fatal)" : ""}`);
  else reportError(`unknown message type from server: ${msg.type}`);
}

function onWelcome(msg) {
  Object.assign(stats, { connected: true, session: msg.session, width: msg.width, height: msg.height });
  conn.attempts = 0;
  conn.seq = 0;
  setState("open");
  conn.statsTimer = setInterval(() => sendJson({ type: "stats" }), STATS_POLL_MS);
  conn.hooks.welcome(msg);
}

function onInterrupted(msg) {
  stats.interrupted++;
  conn.hooks.interrupted(Number.isInteger(msg.next_index) ? msg.next_index : stats.lastIndex + 1);
}

function onStats(msg) {
  if (typeof msg.frames_dropped === "number") stats.serverDropped = msg.frames_dropped;
  if (typeof msg.fps === "number") stats.serverFps = msg.fps;
}
