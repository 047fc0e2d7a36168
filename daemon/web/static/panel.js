// The control panel: shows the daemon's state (polled from /api/state) and sends the same
// commands as MQTT's cmd/<name> through POST /api/<name>.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
const $ = (id) => document.getElementById(id);
const HISTORY_S = 60;
const POLL_MS = 250;
const history = []; // {t, valence, arousal, av, aa}: plan and analysis values

function withToken(path) {
  if (!token) return path;
  return `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
}

async function send(name, payload) {
  const message = $("message");
  try {
    const response = await fetch(withToken(`/api/${name}`), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(payload),
    });
    const answer = await response.json();
    message.textContent = answer.ok ? `${name}: applied at the next bar` : answer.message;
    message.className = answer.ok ? "" : "error";
    return answer;
  } catch (err) {
    message.textContent = `${name}: the daemon did not answer (${err})`;
    message.className = "error";
    return { ok: false };
  }
}

function show(state) {
  $("online").classList.add("on");
  $("s-scene").textContent = state.scene ?? "–";
  $("s-bpm").textContent = state.bpm == null ? "–" : Math.round(state.bpm);
  $("s-layers").textContent = state.layers ?? "–";
  $("s-key").textContent = state.key ? `${state.key} ${state.mode}` : "–";
  $("s-bar").textContent = state.bar ?? "–";
  $("s-source").textContent = state.source ?? "–";
  $("s-viewers").textContent = state.viewers;
  $("s-playing").textContent = state.playing === false ? "stopped" : "playing";
  const cue = state.cue;
  $("s-cue").textContent = cue ? `${cue.kind}${cue.scene ? " " + cue.scene : ""} at ${cue.audio_time.toFixed(1)} s` : "–";
  showHealth(state.health || {});
  const overrides = state.overrides || {};
  $("tempo-auto").classList.toggle("on", !("bpm" in overrides || "tempo" in overrides));
  for (const button of document.querySelectorAll("#layer-count button")) {
    const fixed = overrides.layers ?? null;
    button.classList.toggle("on", button.dataset.layers === String(fixed ?? "auto"));
  }
  for (const box of document.querySelectorAll("#mutes input")) {
    box.checked = (state.muted || []).includes(box.value);
  }
  const scene = overrides.scene ?? "auto";
  if (document.activeElement !== $("scene") && [...$("scene").options].some((o) => o.value === scene)) {
    $("scene").value = scene;
  }
  showTeach(state.teach);
  const analysis = state.analysis || {};
  history.push({
    t: state.audio_time,
    valence: state.valence, arousal: state.arousal,
    av: analysis.valence, aa: analysis.arousal,
  });
  while (history.length && history[0].t < state.audio_time - HISTORY_S) history.shift();
  plot();
}

// The audio's health badge: "ok" or "glitching", with the counts a listener would hear as gaps.
function showHealth(health) {
  const badge = $("health");
  if (!health.status) {
    badge.textContent = "–";
    badge.className = "";
    return;
  }
  const late = health.late_blocks ?? 0;
  const glitches = late + (health.xruns ?? 0) + (health.underruns ?? 0);
  badge.textContent = `${health.status} · ${late} late blocks` +
    (glitches > late ? ` · ${glitches - late} other glitches` : "");
  badge.className = health.status;
  badge.dataset.lateBlocks = String(late);
  badge.title = `late blocks ${late} (${health.late_blocks_per_min ?? 0}/min), ` +
    `xruns ${health.xruns ?? 0}, bars late from the composer ${health.underruns ?? 0}, ` +
    `CPU ${health.cpu_percent ?? "–"} %, memory ${health.rss_mb ?? "–"} MB`;
}

function plot() {
  const canvas = $("plot");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#2c313c";
  ctx.lineWidth = 1;
  ctx.beginPath(); ctx.moveTo(0, h / 2); ctx.lineTo(w, h / 2); ctx.stroke();
  if (!history.length) return;
  const now = history[history.length - 1].t;
  const x = (t) => w - ((now - t) / HISTORY_S) * w;
  const y = (v) => h / 2 - (v ?? 0) * (h / 2 - 6);
  const style = getComputedStyle(document.documentElement);
  for (const [key, colour, width] of [["av", "--accent", 1], ["aa", "--cool", 1],
    ["valence", "--accent", 3], ["arousal", "--cool", 3]]) {
    ctx.strokeStyle = style.getPropertyValue(colour);
    ctx.lineWidth = width;
    ctx.beginPath();
    history.forEach((point, i) => {
      if (point[key] == null) return;
      if (i === 0) ctx.moveTo(x(point.t), y(point[key])); else ctx.lineTo(x(point.t), y(point[key]));
    });
    ctx.stroke();
  }
}

// -- teaching: the next seconds are this scene; keys 1-9 teach the n-th button, U undoes ------

const BUILT_IN = ["combat", "exploration", "dialogue", "menu"];

function teach(scene) {
  const seconds = Math.min(120, Math.max(1, Number($("teach-seconds").value) || 5));
  return send("teach", { scene, seconds });
}

function teachUndo() {
  return send("teach/undo", {});
}

function setupTeach(scenes) {
  const custom = scenes.filter((s) => !BUILT_IN.includes(s) && s !== "default");
  const order = [...BUILT_IN.filter((s) => scenes.includes(s)), ...custom];
  order.forEach((scene, i) => {
    const button = document.createElement("button");
    button.dataset.scene = scene;
    button.textContent = scene;
    if (i < 9) {
      const key = document.createElement("kbd");
      key.textContent = String(i + 1);
      button.append(key);
    }
    button.addEventListener("click", () => teach(scene));
    $("teach-buttons").append(button);
  });
  $("teach-undo").addEventListener("click", () => teachUndo());
  $("profiles").addEventListener("change", () => showProfile());
  $("profile-use").addEventListener("click", async () => {
    const game = $("profiles").value;
    if (game) await send("game", { game });
    listProfiles();
  });
  document.addEventListener("keydown", (event) => {
    if ($("teach").hidden || event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = (event.target && event.target.tagName) || "";
    if (["INPUT", "SELECT", "TEXTAREA"].includes(tag)) return;
    if (event.key === "u" || event.key === "U") { event.preventDefault(); teachUndo(); return; }
    const n = Number(event.key);
    if (Number.isInteger(n) && n >= 1 && n <= Math.min(9, order.length)) {
      event.preventDefault();
      teach(order[n - 1]);
    }
  });
}

// Every saved game profile: pick one to use from the next bar, or to export.
let profileList = [];
let listedFor = null; // the game and batch count the list was fetched for

async function listProfiles() {
  try {
    const answer = await (await fetch(withToken("/api/profiles"))).json();
    profileList = answer.profiles || [];
  } catch (err) {
    return;
  }
  const select = $("profiles");
  const chosen = select.value;
  select.replaceChildren(...profileList.map((p) => {
    const option = new Option(`${p.game}${p.current ? " (in use)" : ""}`, p.game);
    option.disabled = !p.usable;
    return option;
  }));
  const current = profileList.find((p) => p.current);
  if (profileList.some((p) => p.game === chosen)) select.value = chosen;
  else if (current) select.value = current.game;
  showProfile();
}

function showProfile() {
  const game = $("profiles").value;
  const profile = profileList.find((p) => p.game === game);
  $("teach-export").href = withToken(game ? `/api/profile?game=${encodeURIComponent(game)}` : "/api/profile");
  const taught = profile ? Object.entries(profile.seconds).map(([k, v]) => `${k} ${Math.round(v)} s`) : [];
  $("profile-taught").textContent = profile ? (taught.join(", ") || "nothing taught") : "";
  $("profile-use").disabled = !profile || profile.current || !profile.usable;
}

function showTeach(teachState) {
  $("teach").hidden = !teachState;
  if (!teachState) return;
  const reading = teachState.reading || {};
  $("teach-reading").textContent = reading.scene ?? "–";
  $("teach-confidence").textContent = reading.scene ? `${Math.round(100 * reading.confidence)} %` : "–";
  $("teach-by").textContent = teachState.adapted ? "your taught model" : "the general model";
  const seconds = Object.entries(teachState.seconds || {}).map(([k, v]) => `${k} ${Math.round(v)} s`);
  const collecting = teachState.collecting;
  if (collecting) seconds.push(`(${collecting.scene}: ${Math.ceil(collecting.left_s)} s to go)`);
  if (teachState.training) seconds.push("(training)");
  $("teach-seconds-taught").textContent = seconds.length ? seconds.join(", ") : "nothing yet";
  $("teach-game").textContent = teachState.game ? teachState.game : "not saved (run --game NAME)";
  const listed = `${teachState.game}/${teachState.batches}/${teachState.adapted}`;
  if (listed !== listedFor) {
    listedFor = listed;
    listProfiles();
  }
  const held = teachState.held_back || {};
  $("teach-held").textContent = held.adapted == null ? "–"
    : `taught ${Math.round(100 * held.adapted)} % vs general ${Math.round(100 * held.general)} %`;
  for (const button of document.querySelectorAll("#teach-buttons button")) {
    button.classList.toggle("collecting", !!collecting && collecting.scene === button.dataset.scene);
  }
}

async function poll() {
  try {
    const response = await fetch(withToken("/api/state"));
    if (response.ok) show(await response.json());
    else $("online").classList.remove("on");
  } catch (err) {
    $("online").classList.remove("on");
  }
  setTimeout(poll, POLL_MS);
}

// -- "use this browser's camera": the camera goes to the daemon over WebRTC as its source ------

let camera = null; // {pc, stream}

function gatheringComplete(pc, timeoutMs) {
  // aiortc does not take trickled candidates: the offer must carry ours.
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
    setTimeout(resolve, timeoutMs);
  });
}

function stopCamera() {
  if (camera) {
    camera.pc.close();
    for (const track of camera.stream.getTracks()) track.stop();
    camera = null;
  }
  $("camera-preview").hidden = true;
  $("camera-start").hidden = false;
  $("camera-stop").hidden = true;
}

async function startCamera() {
  const message = $("message");
  stopCamera();
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } },
      audio: false,
    });
  } catch (err) {
    message.textContent = `camera: the browser gave no camera (${err.name}); allow it and retry`;
    message.className = "error";
    return;
  }
  const pc = new RTCPeerConnection({ iceServers: [] });
  camera = { pc, stream };
  for (const track of stream.getVideoTracks()) pc.addTransceiver(track, { direction: "sendonly" });
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc, 3000);
    const response = await fetch(withToken("/api/camera"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer" }),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.status);
    await pc.setRemoteDescription(answer);
  } catch (err) {
    stopCamera();
    message.textContent = `camera: ${err.message || err}`;
    message.className = "error";
    return;
  }
  const preview = $("camera-preview");
  preview.srcObject = stream;
  preview.hidden = false;
  preview.play().catch(() => {});
  $("camera-start").hidden = true;
  $("camera-stop").hidden = false;
  message.textContent = "camera: sending; the daemon switches to it when the first picture arrives";
  message.className = "";
}

async function setup() {
  for (const id of ["valence", "arousal", "tempo"]) {
    $(id).addEventListener("input", () => { $(`${id}-out`).textContent = $(id).value; });
  }
  $("mood-set").addEventListener("click", () => send("mood", {
    valence: Number($("valence").value), arousal: Number($("arousal").value),
    hold_s: Number($("hold").value),
  }));
  $("mood-release").addEventListener("click", () => send("mood", {
    valence: Number($("valence").value), arousal: Number($("arousal").value), hold_s: 0,
  }));
  $("scene").addEventListener("change", () => send("scene", { scene: $("scene").value === "auto" ? null : $("scene").value }));
  $("tempo-set").addEventListener("click", () => send("tempo", { bpm: Number($("tempo").value) }));
  $("tempo-auto").addEventListener("click", () => send("tempo", { bpm: null }));
  $("play").addEventListener("click", () => send("transport", { action: "play" }));
  $("stop").addEventListener("click", () => send("transport", { action: "stop" }));
  $("source-set").addEventListener("click", () => {
    const spec = $("source").value.trim();
    if (spec) send("source", { source: spec });
  });
  $("camera-start").addEventListener("click", () => startCamera());
  $("camera-stop").addEventListener("click", () => {
    stopCamera();
    $("message").textContent = "camera: stopped; the music goes on in the last mood";
    $("message").className = "";
  });
  if (!navigator.mediaDevices) $("camera-start").disabled = true; // not a secure context
  try {
    const info = await (await fetch(withToken("/api/info"))).json();
    for (const scene of info.scenes) $("scene").add(new Option(scene, scene));
    setupTeach(info.scenes);
    for (const value of ["auto", 1, 2, 3, 4, 5]) {
      const button = document.createElement("button");
      button.textContent = value;
      button.dataset.layers = String(value);
      button.addEventListener("click", () => send("layers", { layers: value === "auto" ? null : value }));
      $("layer-count").append(button);
    }
    for (const kind of info.stingers || []) {
      const button = document.createElement("button");
      button.textContent = kind;
      button.addEventListener("click", () => send("stinger", { kind }));
      $("stingers").append(button);
    }
    for (const layer of info.layers) {
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = layer;
      box.addEventListener("change", () => send("mute", { layer, muted: box.checked }));
      label.append(box, layer);
      $("mutes").append(label);
    }
  } catch (err) {
    $("message").textContent = `cannot reach the daemon (${err})`;
    $("message").className = "error";
  }
  poll();
}

setup();
