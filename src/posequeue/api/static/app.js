// The posequeue page: sign in with a token, upload with progress, follow jobs, open results.
// Plain JavaScript against the /v1 API; the token stays in this browser's localStorage.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "posequeue-token";
let token = localStorage.getItem(TOKEN_KEY) || "";
let timer = null;
let shown = 20;

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) { signIn(); throw new Error("sign in first"); }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.message || response.statusText);
  return body;
}

function show(id) {
  for (const s of ["signin", "home", "job"]) $(s).hidden = s !== id;
  $("signout").hidden = !token;
}

function signIn() {
  clearTimeout(timer);
  show("signin");
  $("token").focus();
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  try {
    await api("/v1/jobs?limit=1");
    localStorage.setItem(TOKEN_KEY, token);
    $("signin-error").textContent = "";
    route();
  } catch (err) {
    $("signin-error").textContent = "That token was not accepted.";
  }
});

$("signout").addEventListener("click", () => {
  localStorage.removeItem(TOKEN_KEY);
  token = "";
  signIn();
});

// -- upload ----------------------------------------------------------------------------------
$("upload-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData();
  for (const [name, value] of new FormData($("upload-form"))) {
    if (name !== "file" && value === "") continue;  // unset options take the server's defaults
    form.append(name, value);
  }
  form.set("analysis", $("analysis").checked ? "true" : "false");
  form.set("video_mode", $("video-mode").checked ? "true" : "false");
  const xhr = new XMLHttpRequest();  // fetch() reports no upload progress
  const bar = $("upload-progress");
  bar.hidden = false; bar.value = 0;
  $("upload-error").textContent = "";
  $("upload-button").disabled = true;
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = e.loaded / e.total; };
  xhr.onload = () => {
    $("upload-button").disabled = false;
    bar.hidden = true;
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
    if (xhr.status === 202) { location.hash = "#/jobs/" + body.id; return; }
    if (xhr.status === 401) { signIn(); return; }
    $("upload-error").textContent = body.message || ("upload failed: HTTP " + xhr.status);
  };
  xhr.onerror = () => {
    $("upload-button").disabled = false;
    $("upload-error").textContent = "the upload did not reach the server";
  };
  xhr.open("POST", "/v1/jobs");
  if (token) xhr.setRequestHeader("Authorization", "Bearer " + token);
  xhr.send(form);
});

// -- jobs list -------------------------------------------------------------------------------
function when(t) { return t ? new Date(t * 1000).toLocaleString() : ""; }
function seconds(job) {
  const end = job.finished_at || Date.now() / 1000;
  return job.submitted_at ? (end - job.submitted_at).toFixed(1) + " s" : "";
}
function cell(row, content) { const td = row.insertCell(); td.append(content); return td; }

let models = null;  // name -> {keypoints, edges}

async function loadModels() {
  if (models) return;
  const answer = await api("/v1/models");
  models = Object.fromEntries(answer.models.map((m) => [m.name, m]));
  const select = $("model");
  for (const m of answer.models) select.add(new Option(m.name, m.name, false, m.name === answer.default));
}

async function home() {
  show("home");
  try {
    await loadModels();
    const page = await api("/v1/jobs?limit=" + shown);
    const body = $("jobs").tBodies[0];
    body.replaceChildren();
    for (const job of page.jobs) {
      const row = body.insertRow();
      const link = document.createElement("a");
      link.href = "#/jobs/" + job.id; link.textContent = job.id.slice(0, 8);
      cell(row, link);
      const status = document.createElement("span");
      status.className = "status " + job.status; status.textContent = job.status;
      cell(row, status);
      const bar = document.createElement("progress");
      bar.max = 1; bar.value = job.progress.fraction;
      cell(row, bar);
      cell(row, when(job.submitted_at));
      cell(row, seconds(job));
    }
    $("more").hidden = !page.next;
    const busy = page.jobs.some((j) => j.status === "queued" || j.status === "running");
    timer = setTimeout(route, busy ? 1000 : 5000);
  } catch (err) {
    $("upload-error").textContent = err.message;
  }
}
$("more").addEventListener("click", () => { shown += 20; route(); });

// -- one job ---------------------------------------------------------------------------------
function byName(files) { return Object.fromEntries(files.map((f) => [f.name, f])); }

function showVideo(files) {
  // the overlay (analysis) when it exists, else the input video as uploaded
  const pick = files["overlay.mp4"] || Object.values(files).find((f) => f.name.startsWith("input"));
  const video = $("video");
  if (!pick) { video.hidden = true; return; }
  if (video.dataset.name !== pick.name) {
    video.dataset.name = pick.name;
    video.src = pick.link;
    video.hidden = false;
    if (pick.name === "overlay.mp4") $("skeleton-toggle").hidden = true;  // drawn in the video
    drawPoses();
    $("video-note").textContent = pick.name === "overlay.mp4"
      ? "The video with the skeletons and angles drawn."
      : "The input video (the overlay appears here when the analysis has made it).";
  }
}

function showPlots(files) {
  const images = Object.values(files).filter((f) => f.type.startsWith("image/"));
  const plots = images.filter((f) => f.name !== "preview.png");
  const wanted = plots.length ? plots : images;  // the poses preview until plots exist
  const box = $("plots");
  if (box.dataset.names === wanted.map((f) => f.name).join()) return;
  box.dataset.names = wanted.map((f) => f.name).join();
  box.replaceChildren(...wanted.map((f) => {
    const img = document.createElement("img");
    img.src = f.link; img.alt = f.name; img.title = f.name;
    return img;
  }));
}

function statRows(value, path, rows) {
  // every object with numeric min and max in analysis.json is one range-of-motion row
  if (!value || typeof value !== "object") return rows;
  if (typeof value.min === "number" && typeof value.max === "number") rows.push([path.join(" / "), value]);
  else for (const [k, v] of Object.entries(value)) statRows(v, path.concat(k), rows);
  return rows;
}

// -- the poses drawn over the input video, until the analysis's overlay.mp4 exists ----------------
const MAX_FRAMES_DRAWN = 20000;  // a longer job's poses.json is too big to load into a page
let poses = null;  // {id, frames, times, edges}

async function loadPoses(job, files) {
  if (files["overlay.mp4"] || !files["poses.json"] || (poses && poses.id === job.id)) return;
  if ((job.progress.frames_total || 0) > MAX_FRAMES_DRAWN) return;
  poses = { id: job.id, frames: [], times: [], edges: [] };
  const data = await (await fetch(files["poses.json"].link)).json();
  await loadModels();
  const model = models[data.model.name];
  poses = { id: job.id, frames: data.frames, times: data.frames.map((f) => f.t), edges: model ? model.edges : [] };
  $("skeleton-toggle").hidden = false;
  drawPoses();
}

function frameAt(t) {  // the last frame shown at or before t (binary search over presentation times)
  let lo = 0, hi = poses.times.length - 1;
  if (hi < 0 || t < poses.times[0] - 0.001) return null;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (poses.times[mid] <= t + 0.001) lo = mid; else hi = mid - 1;
  }
  return poses.frames[lo];
}

function drawPoses() {
  const video = $("video"), canvas = $("skeleton");
  canvas.width = video.clientWidth; canvas.height = video.clientHeight;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!poses || !poses.frames.length || !video.videoWidth || !$("show-skeleton").checked) return;
  if (video.dataset.name === "overlay.mp4") return;
  // the video is letterboxed into its box; poses are in pixels of the displayed frame
  const scale = Math.min(canvas.width / video.videoWidth, canvas.height / video.videoHeight);
  const ox = (canvas.width - video.videoWidth * scale) / 2, oy = (canvas.height - video.videoHeight * scale) / 2;
  const frame = frameAt(video.currentTime);
  if (!frame) return;
  const seen = (k) => k[3] >= 0.5;
  const at = (k) => [ox + k[0] * scale, oy + k[1] * scale];
  const colours = ["#39ff14", "#00c8ff", "#ffd60a", "#ff2fd6", "#ff8c00", "#b388ff"];
  ctx.lineWidth = 3; ctx.fillStyle = "#ff3b30";
  frame.people.forEach((person, i) => {
    const kps = person.keypoints;
    ctx.strokeStyle = colours[(person.track_id ?? i) % colours.length];  // one colour per track
    for (const [a, b] of poses.edges) {
      if (!kps[a] || !kps[b] || !seen(kps[a]) || !seen(kps[b])) continue;
      ctx.beginPath(); ctx.moveTo(...at(kps[a])); ctx.lineTo(...at(kps[b])); ctx.stroke();
    }
    for (const k of kps) if (seen(k)) { ctx.beginPath(); ctx.arc(...at(k), 3, 0, 2 * Math.PI); ctx.fill(); }
  });
}

function followVideo() {
  const video = $("video");
  const next = () => { drawPoses(); if (!video.paused) video.requestVideoFrameCallback(next); };
  video.addEventListener("play", () => video.requestVideoFrameCallback(next));
  for (const e of ["seeked", "loadeddata", "pause"]) video.addEventListener(e, drawPoses);
  window.addEventListener("resize", drawPoses);
  $("show-skeleton").addEventListener("change", drawPoses);
}
followVideo();

function romRows(data) {
  // analysis.json: {"tracks": [{"track_id", "angles": {name: {min, max, ...}}}]}; else any min/max
  if (Array.isArray(data.tracks)) {
    return data.tracks.flatMap((tr) => Object.entries(tr.angles || {}).map(
      ([name, s]) => ["track " + tr.track_id + ": " + name.replaceAll("_", " "), s]));
  }
  return statRows(data, [], []);
}

async function showRom(files) {
  const box = $("rom");
  const file = files["analysis.json"];
  if (!file || box.dataset.done) return;
  box.dataset.done = "1";
  const data = await (await fetch(file.link)).json();
  const rows = romRows(data);
  if (!rows.length) return;
  const cols = ["min", "max", "range", "mean", "p5", "p95"];
  const table = document.createElement("table");
  table.createTHead().insertRow().append(...["", ...cols].map((c) => {
    const th = document.createElement("th"); th.textContent = c; return th;
  }));
  const body = table.createTBody();
  for (const [name, s] of rows) {
    const row = body.insertRow();
    cell(row, name);
    for (const c of cols) cell(row, typeof s[c] === "number" ? s[c].toFixed(1) : "");
  }
  const title = document.createElement("h3");
  title.textContent = "Range of motion";
  box.replaceChildren(title, table);
}

async function jobPage(id) {
  show("job");
  if ($("job-id").textContent !== id) {
    $("job-id").textContent = id;
    for (const box of ["plots", "rom"]) { $(box).replaceChildren(); delete $(box).dataset.names; delete $(box).dataset.done; }
    $("video").removeAttribute("src"); delete $("video").dataset.name; $("video").hidden = true;
    poses = null; $("skeleton-toggle").hidden = true; drawPoses();
  }
  try {
    const job = await api("/v1/jobs/" + id);
    const status = $("job-status");
    status.textContent = job.status; status.className = "status " + job.status;
    $("job-progress").value = job.progress.fraction;
    $("job-frames").textContent = job.progress.frames_done + " / " + (job.progress.frames_total || "?") + " frames";
    $("job-error").textContent = job.error || "";
    $("job-warnings").replaceChildren(...job.warnings.map((w) => { const li = document.createElement("li"); li.textContent = w; return li; }));
    const files = byName(job.files);
    showVideo(files);
    if (job.status === "done") { showPlots(files); await loadPoses(job, files); await showRom(files); }
    $("downloads").replaceChildren(...job.files.map((f) => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = f.link; a.textContent = f.name; a.download = f.name.split("/").pop();
      li.append(a);
      return li;
    }));
    const ongoing = job.status === "queued" || job.status === "running";
    const analysing = job.analysis && (job.analysis.status === "queued" || job.analysis.status === "running");
    $("job-analysis").textContent = job.analysis && job.analysis.status !== "off"
      ? "Motion analysis: " + job.analysis.status + (job.analysis.error ? " (" + job.analysis.error + ")" : "") : "";
    $("cancel").hidden = !ongoing;
    $("retry").hidden = !(job.status === "failed" || job.status === "cancelled");
    if (ongoing || analysing) timer = setTimeout(route, 1000);
  } catch (err) {
    $("job-error").textContent = err.message;
  }
}

async function control(method, suffix) {
  const id = $("job-id").textContent;
  try {
    await api("/v1/jobs/" + id + suffix, { method });
  } catch (err) {
    $("job-error").textContent = err.message;
  }
  route();
}
$("cancel").addEventListener("click", () => {
  if (confirm("Cancel this job? Its work so far is dropped.")) control("DELETE", "");
});
$("retry").addEventListener("click", () => control("POST", "/retry"));

function route() {
  clearTimeout(timer);
  const match = location.hash.match(/^#\/jobs\/([0-9a-f]{32})$/);
  if (match) jobPage(match[1]); else home();
}

window.addEventListener("hashchange", route);
route();
