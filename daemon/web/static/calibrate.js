// The panel's calibration page: tap along to the beat as you hear it; the median offset of the
// taps from the beats at the reference (the engine's sound, GET /api/beats) is how late that
// path is heard; the proposed delay for the chosen output is that offset (the sound card), or
// that offset less the sound card's delay (any other output: the sound card's already moves it).
// Apply sends the same `delay` command as MQTT's cmd/delay (send() and withToken() of panel.js).
"use strict";

const calibration = (() => {
  const MIN_TAPS = 8;
  const LIMITS = { engine: [0, 2000], midi: [-500, 500], mqtt: [-500, 2000], osc: [-500, 2000], os2l: [-500, 2000], web: [-100, 2000] };
  const beats = new Map(); // index -> unix ms at the reference
  let taps = []; // unix ms
  let bpm = null;
  let proposed = null;

  async function fetchBeats() {
    try {
      const answer = await (await fetch(withToken("/api/beats"))).json();
      bpm = answer.bpm;
      for (const beat of answer.beats) beats.set(beat.index, beat.unix);
      for (const index of [...beats.keys()].sort((a, b) => a - b).slice(0, -128)) beats.delete(index);
    } catch (err) {
      // The daemon is away: the panel's own poll says so.
    }
  }

  function median(values) {
    const sorted = [...values].sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  }

  // Offsets of the taps from their nearest beat, in ms (a tap is at most half a beat off).
  function offsets() {
    const times = [...beats.values()];
    const half = bpm ? 30000 / bpm : 250;
    const found = [];
    for (const tap of taps) {
      let best = null;
      for (const beat of times) {
        if (best === null || Math.abs(tap - beat) < Math.abs(tap - best)) best = beat;
      }
      if (best !== null && Math.abs(tap - best) <= half) found.push(tap - best);
    }
    return found;
  }

  async function update() {
    await fetchBeats();
    const found = offsets();
    $("cal-taps").textContent = taps.length;
    if (found.length < MIN_TAPS) {
      $("cal-offset").textContent = "–";
      $("cal-proposed").textContent = "–";
      $("cal-apply").disabled = true;
      proposed = null;
      return null;
    }
    const heard = median(found);
    const output = $("cal-output").value;
    let engine = 0;
    try {
      engine = (await (await fetch(withToken("/api/state"))).json()).delays?.engine ?? 0;
    } catch (err) {
      engine = 0;
    }
    const [low, high] = LIMITS[output];
    const wanted = output === "engine" ? heard : heard - engine;
    proposed = Math.round(Math.min(high, Math.max(low, wanted)));
    $("cal-offset").textContent = heard.toFixed(1);
    $("cal-proposed").textContent = proposed;
    $("cal-apply").disabled = false;
    return proposed;
  }

  function tap(unixMs) {
    taps.push(unixMs);
    $("cal-taps").textContent = taps.length;
    if (taps.length >= MIN_TAPS) update();
  }

  function eventTime(event) {
    return performance.timeOrigin + event.timeStamp;
  }

  $("tap").addEventListener("pointerdown", (event) => tap(eventTime(event)));
  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement?.tagName);
    if (!typing && !event.repeat && (event.key === "t" || event.key === "T")) tap(eventTime(event));
  });
  $("cal-reset").addEventListener("click", () => { taps = []; update(); });
  $("cal-output").addEventListener("change", () => update());
  $("cal-apply").addEventListener("click", async () => {
    if (proposed === null) return;
    const answer = await send("delay", { output: $("cal-output").value, ms: proposed });
    if (answer.ok) {
      $("message").textContent = `delay: ${$("cal-output").value} ${proposed} ms, applied now`;
    }
  });
  fetchBeats();
  setInterval(fetchBeats, 1000);
  return { update, get proposed() { return proposed; }, get taps() { return taps.length; } };
})();
