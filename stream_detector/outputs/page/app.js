// The review page: events from /api/events, one event's snapshot, clip and score timeline, its
// verdict; the camera strip from /api/cameras. Plain DOM, no framework, nothing fetched from
// anywhere but this server.
"use strict";

const PAGE = 25;
const state = { offset: 0, selected: null, events: [] };
const $ = (id) => document.getElementById(id);

async function api(path, options) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function when(epoch) {
  return epoch == null ? "" : new Date(epoch * 1000).toLocaleString();
}

function verdictLabel(verdict) {
  return { false_alarm: "false alarm", confirmed: "confirmed" }[verdict] || "not reviewed";
}

function cell(row, content) {
  const td = document.createElement("td");
  if (content instanceof Node) td.appendChild(content); else td.textContent = content;
  row.appendChild(td);
}

async function loadCameras() {
  try {
    const { cameras } = await api("/api/cameras");
    const strip = $("cameras");
    strip.textContent = "";
    const select = $("f-camera");
    for (const cam of cameras) {
      const div = document.createElement("div");
      div.className = "cam" + (cam.stream_up ? "" : " down") + (cam.anomaly ? " anomaly" : "");
      div.dataset.camera = cam.name;
      const score = cam.score == null ? "-" : cam.score.toFixed(2);
      div.textContent = `${cam.name}: ${cam.stream_up ? "up" : "down"}, score ${score}`;
      strip.appendChild(div);
      if (![...select.options].some((o) => o.value === cam.name)) {
        select.add(new Option(cam.name, cam.name));
      }
    }
  } catch (err) { /* the next refresh tries again */ }
}

async function loadEvents() {
  const q = new URLSearchParams({ limit: PAGE, offset: state.offset });
  if ($("f-camera").value) q.set("camera", $("f-camera").value);
  if ($("f-verdict").value) q.set("verdict", $("f-verdict").value);
  const page = await api(`/api/events?${q}`);
  state.events = page.events;
  const body = $("events");
  body.textContent = "";
  for (const ev of page.events) {
    const row = document.createElement("tr");
    row.dataset.id = ev.id;
    if (ev.id === state.selected) row.className = "selected";
    const img = document.createElement("img");
    if (ev.snapshot_url) { img.src = ev.snapshot_url; img.alt = "snapshot"; img.loading = "lazy"; }
    cell(row, img);
    cell(row, ev.camera);
    cell(row, when(ev.start_time));
    cell(row, ev.duration == null ? "open" : `${ev.duration.toFixed(1)} s`);
    cell(row, ev.peak_score.toFixed(2));
    const badge = document.createElement("span");
    badge.className = "badge " + (ev.verdict || "");
    badge.textContent = verdictLabel(ev.verdict);
    cell(row, badge);
    row.addEventListener("click", () => openEvent(ev.id));
    body.appendChild(row);
  }
  $("empty").hidden = page.events.length > 0;
  $("older").disabled = page.next == null;
  $("newer").disabled = state.offset === 0;
}

async function openEvent(id) {
  const ev = await api(`/api/events/${encodeURIComponent(id)}`);
  const fresh = state.selected !== id;
  state.selected = id;
  for (const row of $("events").rows) row.className = row.dataset.id === id ? "selected" : "";
  $("detail").hidden = false;
  $("d-title").textContent = `${ev.camera}, ${when(ev.start_time)}`;
  const duration = ev.duration == null ? "still open" : `${ev.duration.toFixed(1)} s`;
  $("d-facts").textContent = `id ${ev.id} · ${duration} · peak ${ev.peak_score.toFixed(2)}` +
    (ev.end_reason ? ` · ended: ${ev.end_reason}` : "");
  $("d-verdict").textContent = verdictLabel(ev.verdict);
  $("d-error").textContent = "";
  const video = $("d-clip");
  if (fresh) {
    if (ev.clip_url) { video.src = ev.clip_url; video.hidden = false; } else { video.removeAttribute("src"); video.hidden = true; }
    $("d-noclip").hidden = Boolean(ev.clip_url);
    $("d-snapshot").src = ev.snapshot_url || "";
    $("d-snapshot").hidden = !ev.snapshot_url;
  }
  drawTimeline(ev);
}

function drawTimeline(ev) {
  const canvas = $("d-timeline");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const points = ev.timeline || [];
  if (points.length < 2) {
    ctx.fillText("no score timeline for this event", 10, 20);
    return;
  }
  const t0 = points[0][0], t1 = points[points.length - 1][0];
  const top = Math.max(...points.map((p) => p[1]), 1);
  const x = (t) => ((t - t0) / Math.max(t1 - t0, 1e-6)) * (canvas.width - 20) + 10;
  const y = (s) => canvas.height - 15 - (Math.max(s, 0) / top) * (canvas.height - 30);
  ctx.fillStyle = "rgba(192, 57, 43, 0.15)";  // the event itself
  const end = ev.end_time == null ? t1 : ev.end_time;
  ctx.fillRect(x(ev.start_time), 0, Math.max(x(end) - x(ev.start_time), 1), canvas.height);
  ctx.strokeStyle = "#1f6feb";
  ctx.beginPath();
  points.forEach(([t, s], i) => (i ? ctx.lineTo(x(t), y(s)) : ctx.moveTo(x(t), y(s))));
  ctx.stroke();
  ctx.fillStyle = "#222";
  ctx.fillText(`peak ${top.toFixed(2)}`, 12, 12);
  ctx.fillText(`${(t1 - t0).toFixed(0)} s`, canvas.width - 40, canvas.height - 2);
}

async function setVerdict(verdict) {
  if (!state.selected) return;
  try {
    await api(`/api/events/${encodeURIComponent(state.selected)}/verdict`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ verdict }),
    });
    await openEvent(state.selected);
    await loadEvents();
  } catch (err) {
    $("d-error").textContent = err.message;
  }
}

$("v-false").addEventListener("click", () => setVerdict("false_alarm"));
$("v-confirmed").addEventListener("click", () => setVerdict("confirmed"));
$("f-camera").addEventListener("change", () => { state.offset = 0; loadEvents(); });
$("f-verdict").addEventListener("change", () => { state.offset = 0; loadEvents(); });
$("older").addEventListener("click", () => { state.offset += PAGE; loadEvents(); });
$("newer").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); loadEvents(); });

loadCameras();
loadEvents();
setInterval(loadCameras, 2000);
setInterval(() => loadEvents().catch(() => {}), 5000);
