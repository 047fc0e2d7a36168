// The OBS page: plays the daemon's WebRTC stream (music + visuals) full-window, by itself.
//
// Query: ?transparent=1 shows the visuals over a transparent page (OBS overlays): the stream
// carries colour and alpha side by side and a WebGL shader recombines them. ?token=... is
// passed on to the API. ?probe=1 timestamps the audio's onsets (moodscore bench's latency).
// The page reconnects by itself when the daemon restarts or the connection drops.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
const transparent = params.get("transparent") === "1";
const probe = params.get("probe") === "1";
const video = document.getElementById("video");
const hint = document.getElementById("hint");

function withToken(path) {
  return token ? `${path}?token=${encodeURIComponent(token)}` : path;
}

// What tests and the bench read: the live peer connection and, with ?probe=1, the onsets.
window.moodscore = { pc: null, connects: 0, onsets: [], outputLatency: null, state: "new" };

function gatheringComplete(pc, timeoutMs) {
  // aiortc does not take trickled candidates: the offer must carry ours.
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", done);
        resolve();
      }
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs);
  });
}

async function play() {
  try {
    video.muted = false;
    await video.play();
    hint.style.display = "none";
  } catch (err) {
    if (err.name !== "NotAllowedError") return; // e.g. interrupted by the next track: harmless
    // A normal browser may refuse sound before a click (OBS does not): show the picture now,
    // the sound after a click.
    video.muted = true;
    video.play().catch(() => {});
    hint.style.display = "block";
  }
}
hint.addEventListener("click", () => play());

let retryTimer = null;
function scheduleRetry(pc) {
  if (retryTimer !== null) return;
  if (pc) pc.close();
  window.moodscore.state = "retrying";
  retryTimer = setTimeout(() => { retryTimer = null; connect(); }, 2000);
}

async function connect() {
  const pc = new RTCPeerConnection({ iceServers: [] });
  window.moodscore.pc = pc;
  window.moodscore.state = "connecting";
  pc.addTransceiver("audio", { direction: "recvonly" });
  pc.addTransceiver("video", { direction: "recvonly" });
  const stream = new MediaStream();
  pc.addEventListener("track", (event) => {
    // Play as soon as it arrives: a live stream needs no buffer beyond the jitter buffer.
    if ("jitterBufferTarget" in event.receiver) event.receiver.jitterBufferTarget = 0;
    else if ("playoutDelayHint" in event.receiver) event.receiver.playoutDelayHint = 0;
    stream.addTrack(event.track);
    if (video.srcObject !== stream) {
      video.srcObject = stream;
      play();
    }
    if (probe && event.track.kind === "audio") startProbe(stream);
  });
  pc.addEventListener("connectionstatechange", () => {
    window.moodscore.state = pc.connectionState;
    if (pc.connectionState === "connected") window.moodscore.connects += 1;
    if (pc.connectionState === "failed" || pc.connectionState === "closed") scheduleRetry(pc);
    if (pc.connectionState === "disconnected") {
      setTimeout(() => { if (pc.connectionState === "disconnected") scheduleRetry(pc); }, 3000);
    }
  });
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc, 3000);
    const response = await fetch(withToken("/api/offer"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer", transparent }),
    });
    if (!response.ok) throw new Error(`offer refused: ${response.status}`);
    await pc.setRemoteDescription(await response.json());
  } catch (err) {
    console.warn("moodscore: connecting failed, retrying", err);
    scheduleRetry(pc);
  }
}

// A daemon that stopped or crashed sends nothing more, but the browser notices only after ICE
// consent fails (7 s or more). The daemon always sends audio (silence included), so three
// seconds without an audio byte means it is gone: reconnect (it may be back already).
const STALL_MS = 3000;
let lastBytes = -1;
let lastChange = 0;
setInterval(async () => {
  const pc = window.moodscore.pc;
  if (!pc || pc.connectionState !== "connected") { lastBytes = -1; return; }
  let bytes = 0;
  (await pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "audio") bytes = r.bytesReceived;
  });
  const now = performance.now();
  if (bytes !== lastBytes) { lastBytes = bytes; lastChange = now; return; }
  if (now - lastChange > STALL_MS) {
    console.warn("moodscore: the stream stalled; reconnecting");
    lastBytes = -1;
    scheduleRetry(pc);
  }
}, 1000);

// Close our side when the page goes, so the daemon frees the viewer at once.
window.addEventListener("pagehide", () => { if (window.moodscore.pc) window.moodscore.pc.close(); });

// -- transparent: colour (left half) x alpha (right half) -> a transparent canvas ---------------

function startTransparent() {
  document.documentElement.classList.add("transparent");
  const canvas = document.getElementById("canvas");
  canvas.hidden = false;
  const gl = canvas.getContext("webgl", { premultipliedAlpha: true, alpha: true });
  if (!gl) { document.documentElement.classList.remove("transparent"); canvas.hidden = true; return; }
  const vs = "attribute vec2 p; varying vec2 uv; void main() {" +
    " uv = vec2((p.x + 1.0) * 0.5, (1.0 - p.y) * 0.5); gl_Position = vec4(p, 0.0, 1.0); }";
  const fs = "precision mediump float; uniform sampler2D t; varying vec2 uv; void main() {" +
    " vec3 c = texture2D(t, vec2(uv.x * 0.5, uv.y)).rgb;" +
    " float a = texture2D(t, vec2(0.5 + uv.x * 0.5, uv.y)).r;" +
    " gl_FragColor = vec4(c * a, a); }";
  const program = gl.createProgram();
  for (const [type, source] of [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]]) {
    const shader = gl.createShader(type);
    gl.shaderSource(shader, source);
    gl.compileShader(shader);
    gl.attachShader(program, shader);
  }
  gl.linkProgram(program);
  gl.useProgram(program);
  gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer());
  gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
  const where = gl.getAttribLocation(program, "p");
  gl.enableVertexAttribArray(where);
  gl.vertexAttribPointer(where, 2, gl.FLOAT, false, 0, 0);
  gl.bindTexture(gl.TEXTURE_2D, gl.createTexture());
  for (const [key, value] of [[gl.TEXTURE_MIN_FILTER, gl.LINEAR], [gl.TEXTURE_MAG_FILTER, gl.LINEAR],
    [gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE], [gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE]]) {
    gl.texParameteri(gl.TEXTURE_2D, key, value);
  }
  const draw = () => {
    if (video.videoWidth > 0) {
      const w = video.videoWidth / 2, h = video.videoHeight;
      if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
      gl.viewport(0, 0, w, h);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGB, gl.RGB, gl.UNSIGNED_BYTE, video);
      gl.clearColor(0, 0, 0, 0);
      gl.clear(gl.COLOR_BUFFER_BIT);
      gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
    }
    if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(draw);
    else requestAnimationFrame(draw);
  };
  if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(draw);
  else requestAnimationFrame(draw);
}

// -- probe: wall-clock time (ms since the epoch) of each onset in the received audio -----------

const PROBE_WORKLET = `
class Onsets extends AudioWorkletProcessor {
  constructor() { super(); this.last = -1e9; }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      const frame = currentFrame + i;
      // An onset: the first loud sample after 100 ms without one.
      if (Math.abs(channel[i]) > 0.2) {
        if (frame - this.last > sampleRate * 0.1) {
          this.port.postMessage({ time: frame / sampleRate });
        }
        this.last = frame;
      }
    }
    return true;
  }
}
registerProcessor("onsets", Onsets);`;

async function startProbe(stream) {
  const context = new AudioContext({ latencyHint: "interactive" });
  const url = URL.createObjectURL(new Blob([PROBE_WORKLET], { type: "text/javascript" }));
  await context.audioWorklet.addModule(url);
  const node = new AudioWorkletNode(context, "onsets");
  const silent = context.createGain();
  silent.gain.value = 0;
  context.createMediaStreamSource(stream).connect(node).connect(silent).connect(context.destination);
  node.port.onmessage = (event) => {
    // Map the onset's context time to the wall clock through the output timestamp: when the
    // sample reaches the output (the speaker, as far as the browser knows).
    const stamp = context.getOutputTimestamp();
    const wall = performance.timeOrigin + stamp.performanceTime +
      (event.data.time - stamp.contextTime) * 1000;
    window.moodscore.onsets.push(wall);
    window.moodscore.outputLatency = context.outputLatency;
  };
  if (context.state !== "running") await context.resume();
}

// Inside OBS (its browser source has window.obsstudio): report the current scene, and each
// change, so the daemon can pick the game profile by the scene's name ([game] auto_profile).
function reportScene(scene) {
  if (!scene || !scene.name) return;
  fetch(withToken("/api/obs/scene"), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ scene: scene.name }),
  }).catch(() => {});
}

if (window.obsstudio && window.obsstudio.getCurrentScene) {
  window.obsstudio.getCurrentScene(reportScene);
  window.addEventListener("obsSceneChanged", (event) => reportScene(event.detail));
}

if (transparent) startTransparent();
connect();
