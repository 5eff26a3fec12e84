/*
 * AudioAvatar browser viewer (plain JS, no build step). Wire format: docs/protocol.md, version 1.
 *
 * Where the data goes:
 *   microphone / audio file / window.aa.sendSamples
 *       -> PCM16 mono chunks of 40 ms at the source's own sample rate -> binary "audio" messages -> ws /ws
 *   ws /ws binary "frame" messages -> parseFrame -> { index, pts, echoed 16 kHz audio, JPEG }
 *       audio -> AudioBuffer (16 kHz) -> AudioBufferSourceNode started at t0 + pts on the AudioContext clock
 *       JPEG  -> kept until DECODE_AHEAD_S before it is due (a TTS burst can queue many seconds of frames)
 *             -> createImageBitmap -> drawn on the canvas (scaled to fit) when t0 + pts is due on that clock
 *   mouse drag / wheel -> {"type": "camera", yaw, pitch, zoom}, at most CAMERA_MAX_PER_S messages a second
 *   every second -> {"type": "stats"}; the reply and the local counters feed the overlay
 *
 * The clock is the AudioContext's while it runs, else performance.now() (a browser without a user gesture
 * keeps audio suspended; frames still play). t0 is anchored on the first frame with a small lead, and again
 * after "interrupted", after the clock changes, or when frames keep arriving late. While the avatar idles and
 * frames keep arriving well ahead of time, t0 is trimmed a little per frame, so the view (and the orbit)
 * does not lag more than the lead.
 *
 * Connecting: GET /health first; while the server warms up ({"status": "warming"}) the status line says
 * "warming up" and the page asks again every second, then opens ws /ws.
 *
 * Automation hook: window.aa = { stats, sendSamples(float32Array, sampleRate) -> Promise, canvas }.
 */
"use strict";

(() => {
  // ---- constants -------------------------------------------------------------------------------------
  const PROTOCOL_VERSION = 1;
  const KIND_AUDIO = 1;
  const KIND_FRAME = 2;
  const FORMAT_JPEG = 1;
  const AUDIO_HEADER_BYTES = 12;
  const FRAME_HEADER_BYTES = 24;
  const FLAG_SPEAKING = 1;

  const FRAME_PERIOD_S = 1 / 25;
  const ECHO_RATE = 16000;           // the frames' echoed audio
  const CHUNK_S = 0.04;              // outgoing audio chunk length
  const LEAD_S = 0.15;               // jitter buffer: a frame is shown this long after it is anchored
  const DECODE_AHEAD_S = 0.3;        // JPEGs are decoded this long before they are due
  const FAR_BEHIND_S = 1.0;          // one frame this late: re-anchor at once
  const LATE_STREAK_REANCHOR = 5;    // this many late frames in a row: re-anchor
  const TRIM_WINDOW = 25;            // idle frames whose earliness decides a trim
  const TRIM_STEP_S = 0.004;         // per idle frame (10% faster) while all of them came > LEAD + a period early
  const CAMERA_MAX_PER_S = 20;
  const STATS_POLL_MS = 1000;
  const OVERLAY_MS = 250;
  const RECONNECT_MS = [500, 1000, 2000, 5000];
  const WARMING_POLL_MS = 1000;
  const NO_RECONNECT_CODES = new Set([1002, 1008, 1009]);  // protocol, policy, too big: retrying won't help
  const MAX_ERRORS_SHOWN = 5;

  // ---- state -----------------------------------------------------------------------------------------
  const canvas = document.getElementById("view");
  const ctx2d = canvas.getContext("2d");
  const overlay = document.getElementById("overlay");
  const errorList = document.getElementById("errors");

  const stats = {
    framesReceived: 0, framesDrawn: 0, droppedLate: 0, lastIndex: -1, connected: false, errors: [], speakingFrames: 0,
    queued: 0, discarded: 0, interrupted: 0,
    state: "connecting", session: null, width: 0, height: 0, serverDropped: 0, serverFps: null,
  };
  const conn = { ws: null, seq: 0, attempts: 0, statsTimer: null };
  const play = {
    ctx: null, out: null, sources: new Set(),    // audio output
    anchor: null,                                // { t0, audioClock }: frame pts p is due at t0 + p
    queue: [],                                   // received frames not drawn yet, by index
    minIndex: 0,                                 // frames below this (before a barge-in) are discarded
    lateStreak: 0, slack: [], lastBitmap: null,
  };
  const recent = { draws: [], latencies: [] };   // [performance.now() ms] and [[ms, latency ms]], last second
  const camera = { yaw: 0, pitch: 0, zoom: 1, lastSentMs: -Infinity, timer: null, drag: null };
  const input = { sender: null, mic: null };

  // ---- binary protocol -------------------------------------------------------------------------------
  function encodeAudio(int16, sampleRate, seq) {
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

  function parseFrame(buf) {
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

  function floatToInt16(samples) {
    const out = new Int16Array(samples.length);
    for (let i = 0; i < samples.length; i++) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      out[i] = Math.round(s * 32767);
    }
    return out;
  }

  // ---- connection ------------------------------------------------------------------------------------
  function socketUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/ws`;
  }

  /** Ask /health first: while the server warms up (builds or loads its renderer) it refuses sessions with 503,
   * which a WebSocket cannot see, so the page says "warming up" and asks again until it is ready. */
  function connect() {
    setState("connecting");
    fetch("health", { cache: "no-store" })
      .then((r) => (r.ok ? r.json() : null))
      .catch(() => null)
      .then((health) => {
        if (health && health.status === "warming") {
          setState("warming up (the server is preparing its renderer)");
          setTimeout(connect, WARMING_POLL_MS);
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
    ws.onmessage = (ev) => (typeof ev.data === "string" ? onControl(ev.data) : onFrameMessage(ev.data));
    ws.onclose = (ev) => onClose(ws, ev);
    ws.onerror = () => {};          // onclose follows with the code
  }

  function sendHello(ws) {
    const hello = { type: "hello", version: PROTOCOL_VERSION };
    const token = new URLSearchParams(location.search).get("token");
    if (token) hello.token = token;
    ws.send(JSON.stringify(hello));
    setState("hello sent");
  }

  function onClose(ws, ev) {
    if (conn.ws !== ws) return;
    conn.ws = null;
    stats.connected = false;
    clearInterval(conn.statsTimer);
    stopSending();
    setState(`closed (${ev.code}${ev.reason ? " " + ev.reason : ""})`);
    if (NO_RECONNECT_CODES.has(ev.code)) return;
    const delay = RECONNECT_MS[Math.min(conn.attempts, RECONNECT_MS.length - 1)];
    conn.attempts++;
    setTimeout(connect, delay);
  }

  function isOpen() {
    return conn.ws !== null && conn.ws.readyState === WebSocket.OPEN && stats.connected;
  }

  function sendJson(msg) {
    if (isOpen()) conn.ws.send(JSON.stringify(msg));
  }

  function sendAudioChunk(float32, sampleRate) {
    if (!isOpen()) throw new Error("not connected");
    conn.ws.send(encodeAudio(floatToInt16(float32), sampleRate, conn.seq++));
  }

  function setState(state) {
    stats.state = state;
  }

  function reportError(message) {
    stats.errors.push(String(message));
    const li = document.createElement("li");
    li.textContent = String(message);
    errorList.appendChild(li);
    while (errorList.children.length > MAX_ERRORS_SHOWN) errorList.removeChild(errorList.firstChild);
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
    resetPlayback(0);
    setState("open");
    conn.statsTimer = setInterval(() => sendJson({ type: "stats" }), STATS_POLL_MS);
    sendCamera();                     // a reconnect keeps the view the user had
  }

  function onInterrupted(msg) {
    stats.interrupted++;
    resetPlayback(Number.isInteger(msg.next_index) ? msg.next_index : stats.lastIndex + 1);
  }

  function onStats(msg) {
    if (typeof msg.frames_dropped === "number") stats.serverDropped = msg.frames_dropped;
    if (typeof msg.fps === "number") stats.serverFps = msg.fps;
  }

  // ---- playback clock --------------------------------------------------------------------------------
  function audioRunning() {
    return play.ctx !== null && play.ctx.state === "running";
  }

  function clockNow() {
    return audioRunning() ? play.ctx.currentTime : performance.now() / 1000;
  }

  function anchorAt(pts) {
    play.anchor = { t0: clockNow() + LEAD_S - pts, audioClock: audioRunning() };
    play.lateStreak = 0;
    play.slack = [];
  }

  /** Idle frames that all arrived more than LEAD + a period ahead: show them a little sooner. */
  function trimAnchor(frame) {
    play.slack.push(dueTime(frame) - clockNow());
    if (play.slack.length > TRIM_WINDOW) play.slack.shift();
    if (frame.speaking || play.slack.length < TRIM_WINDOW || echoPending()) return;
    if (Math.min(...play.slack) > LEAD_S + FRAME_PERIOD_S) {
      play.anchor.t0 -= TRIM_STEP_S;
      play.slack = play.slack.map((s) => s - TRIM_STEP_S);
    }
  }

  function ensureAnchor(pts) {
    if (play.anchor === null || play.anchor.audioClock !== audioRunning()) anchorAt(pts);
  }

  function dueTime(frame) {
    return play.anchor.t0 + frame.pts;
  }

  /** Drop everything queued and scheduled, and re-anchor on the first frame >= minIndex. */
  function resetPlayback(minIndex) {
    stats.discarded += play.queue.length;
    for (const f of play.queue) discard(f, false);
    play.queue = [];
    stopScheduledAudio();
    play.anchor = null;
    play.minIndex = minIndex;
  }

  // ---- audio output ----------------------------------------------------------------------------------
  function initAudio() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    play.ctx = new Ctx();
    play.out = play.ctx.createGain();
    play.out.connect(play.ctx.destination);
    play.ctx.onstatechange = updateSoundButton;
    updateSoundButton();
  }

  function resumeAudio() {
    if (play.ctx && play.ctx.state === "suspended") play.ctx.resume().catch((e) => reportError(`audio: ${e.message}`));
  }

  function scheduleEcho(frame, when) {
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

  function stopScheduledAudio() {
    const now = audioRunning() ? play.ctx.currentTime : Infinity;
    for (const src of play.sources) {
      if (src.startTime > now) {
        src.stop();
        play.sources.delete(src);
      }
    }
  }

  // ---- frames in -------------------------------------------------------------------------------------
  function onFrameMessage(buf) {
    let frame;
    try {
      frame = parseFrame(buf);
    } catch (e) {
      reportError(e.message);
      return;
    }
    stats.framesReceived++;
    stats.lastIndex = frame.index;
    if (frame.speaking) {
      stats.speakingFrames++;
      recent.latencies.push([performance.now(), frame.latencyMs]);
    }
    if (frame.index < play.minIndex) {                        // queued before a barge-in
      stats.discarded++;
      return;
    }
    if (frame.format !== FORMAT_JPEG) {
      reportError(`frame ${frame.index}: image format ${frame.format} is not JPEG (1)`);
      return;
    }
    ensureAnchor(frame.pts);
    if (!onTime(frame)) return;
    trimAnchor(frame);
    scheduleEcho(frame, dueTime(frame));
    dropStale(clockNow());             // a hidden tab runs no animation frames: don't let the queue grow
    enqueue(frame);
  }

  /** False (and counted) when the frame is already more than a frame period late; re-anchors when frames
   * keep coming late, so a server that stalled and resumed in real time is not dropped forever. */
  function onTime(frame) {
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
    while (play.queue.length > 0 && now - dueTime(play.queue[0]) > FRAME_PERIOD_S) discard(play.queue.shift(), true);
  }

  function enqueue(frame) {
    frame.bitmap = null;
    let i = play.queue.length;
    while (i > 0 && play.queue[i - 1].index > frame.index) i--;
    play.queue.splice(i, 0, frame);
  }

  // ---- drawing ---------------------------------------------------------------------------------------
  function drawLoop() {
    drawDueFrame();
    requestAnimationFrame(drawLoop);
  }

  /** Show the newest frame that is due; frames due more than a period ago are dropped as late. */
  function drawDueFrame() {
    stats.queued = play.queue.length;
    if (play.queue.length === 0) return;
    ensureAnchor(play.queue[0].pts);
    const now = clockNow();
    decodeUpcoming(now);
    let show = null;
    while (play.queue.length > 0 && dueTime(play.queue[0]) <= now) {
      const f = play.queue[0];
      const late = now - dueTime(f);
      if (!f.bitmap && !f.failed && late <= FRAME_PERIOD_S) break;   // still decoding, not late yet
      play.queue.shift();
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
    for (const f of play.queue) {
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
    if (play.lastBitmap) play.lastBitmap.close();
    play.lastBitmap = frame.bitmap;
    frame.bitmap = null;
    paint();
    stats.framesDrawn++;
    recent.draws.push(performance.now());
  }

  function paint() {
    resizeCanvas();
    ctx2d.fillStyle = "#1d1f23";
    ctx2d.fillRect(0, 0, canvas.width, canvas.height);
    const bmp = play.lastBitmap;
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

  // ---- camera: drag to orbit, wheel to zoom ----------------------------------------------------------
  const DEG_PER_PIXEL = 0.4;
  const PITCH_LIMIT = 80;
  const ZOOM_MIN = 0.5;
  const ZOOM_MAX = 3;

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

  function resetView() {
    Object.assign(camera, { yaw: 0, pitch: 0, zoom: 1 });
    sendCameraThrottled();
  }

  /** At most CAMERA_MAX_PER_S messages a second; the last position is always sent. */
  function sendCameraThrottled() {
    const wait = camera.lastSentMs + 1000 / CAMERA_MAX_PER_S - performance.now();
    if (wait <= 0) sendCamera();
    else if (camera.timer === null) camera.timer = setTimeout(sendCamera, wait);
  }

  function sendCamera() {
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

  // ---- audio out to the server: paced samples (files, automation) ------------------------------------
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

  function sendSamples(samples, sampleRate) {
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

  async function sendFile(file) {
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

  // ---- audio out to the server: microphone -----------------------------------------------------------
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

  async function startMic() {
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

  function stopMic() {
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

  function stopSending() {
    if (input.sender) input.sender.cancel();
    input.sender = null;
    stopMic();
    updateMicButton();
  }

  // ---- overlay ---------------------------------------------------------------------------------------
  function pruneRecent(nowMs) {
    while (recent.draws.length && recent.draws[0] < nowMs - 1000) recent.draws.shift();
    while (recent.latencies.length && recent.latencies[0][0] < nowMs - 1000) recent.latencies.shift();
  }

  function median(values) {
    if (values.length === 0) return null;
    const s = [...values].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  }

  function updateOverlay() {
    pruneRecent(performance.now());
    const p50 = median(recent.latencies.map((x) => x[1]));
    const session = stats.session ? ` session ${stats.session} ${stats.width}x${stats.height}` : "";
    const audio = play.ctx ? play.ctx.state : "unavailable";
    overlay.textContent = [
      `state    ${stats.state}${session}`,
      `fps      ${recent.draws.length}${stats.serverFps === null ? "" : ` (server ${stats.serverFps.toFixed(1)})`}`,
      `latency  ${p50 === null ? "-" : p50.toFixed(1) + " ms"} (server p50, speech)`,
      `dropped  client ${stats.droppedLate}  server ${stats.serverDropped}`,
      `frames   received ${stats.framesReceived}  drawn ${stats.framesDrawn}  queued ${stats.queued}`,
      `audio    ${audio}${input.mic ? "  mic on" : ""}${input.sender ? "  sending" : ""}`,
      ...(stats.gesture ? [`gesture  ${stats.gesture}`] : []),
    ].join("\n");
  }

  // ---- page wiring -----------------------------------------------------------------------------------
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

  function interrupt() {
    stopSending();
    sendJson({ type: "interrupt" });
  }

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
    canvas.addEventListener("pointerdown", onPointerDown);
    canvas.addEventListener("pointermove", onPointerMove);
    canvas.addEventListener("pointerup", onPointerUp);
    canvas.addEventListener("pointercancel", onPointerUp);
    canvas.addEventListener("wheel", onWheel, { passive: false });
    window.addEventListener("resize", paint);
  }

  function main() {
    initAudio();
    wire();
    window.aa = { stats, sendSamples, canvas, camera };
    connect();
    setInterval(updateOverlay, OVERLAY_MS);
    requestAnimationFrame(drawLoop);
  }

  main();
})();
