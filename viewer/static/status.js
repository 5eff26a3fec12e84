/*
 * What the page knows about itself: the counters behind the overlay and window.aa.stats, the recent draw
 * times and server latencies (last second, for fps and p50), the status line's state, and the error banner
 * (<ul id="errors">, the last MAX_ERRORS_SHOWN messages; every message is also kept in stats.errors).
 */
const MAX_ERRORS_SHOWN = 5;

const errorList = document.getElementById("errors");

export const stats = {
  framesReceived: 0, framesDrawn: 0, droppedLate: 0, lastIndex: -1, connected: false, errors: [], speakingFrames: 0,
  queued: 0, discarded: 0, interrupted: 0,
  state: "connecting", session: null, width: 0, height: 0, serverDropped: 0, serverFps: null, render: "server",
};
export const recent = { draws: [], latencies: [] };   // [performance.now() ms] and [[ms, latency ms]], last second

export function setState(state) {
  stats.state = state;
}

export function reportError(message) {
  stats.errors.push(String(message));
  const li = document.createElement("li");
  li.textContent = String(message);
  errorList.appendChild(li);
  while (errorList.children.length > MAX_ERRORS_SHOWN) errorList.removeChild(errorList.firstChild);
}

/** Forget draws and latencies older than a second. */
export function pruneRecent(nowMs) {
  while (recent.draws.length && recent.draws[0] < nowMs - 1000) recent.draws.shift();
  while (recent.latencies.length && recent.latencies[0][0] < nowMs - 1000) recent.latencies.shift();
}
