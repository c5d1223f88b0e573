"""The web page served at ``/``: one self-contained HTML + CSS + JS document (nothing loads from outside).

It talks to the REST API only: ``/health`` and ``/v1/models`` on load, then per image ``/v1/explain``
(findings + heatmap, recorded once), ``/v1/similar`` when an index is configured, and the patient's
``/v1/patients/{id}/timeline`` (+ ``.png``) when a patient ID is given or read from DICOM.
"""

INDEX_HTML = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cxrkit - chest X-ray analysis</title>
<link rel="icon" href="data:,">
<style>
  :root { --bg:#f5f6f8; --card:#fff; --ink:#1d2330; --muted:#667085; --line:#e3e6eb; --accent:#2457c5;
          --hot:#c0392b; --hot-bg:#fdecea; --ok:#1e7b4a; --ok-bg:#e8f5ee; }
  * { box-sizing: border-box; }
  body { margin:0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background:var(--bg); color:var(--ink); }
  header { background:#1d2330; color:#fff; padding:12px 24px; display:flex; align-items:baseline; gap:16px; flex-wrap:wrap; }
  header h1 { font-size:19px; margin:0; letter-spacing:.3px; }
  header .sub { color:#b8c0cc; font-size:13px; }
  header .status { margin-left:auto; font-size:13px; color:#b8c0cc; }
  main { max-width:1240px; margin:0 auto; padding:18px 24px 40px; display:grid; grid-template-columns: 300px 1fr; gap:18px; }
  #controls { align-self:start; }
  .card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:16px; }
  .card h2 { font-size:14px; text-transform:uppercase; letter-spacing:.6px; color:var(--muted); margin:0 0 12px; }
  #drop { border:2px dashed #b7c0cf; border-radius:10px; padding:22px 12px; text-align:center; color:var(--muted); cursor:pointer; transition:.15s; }
  #drop.over { border-color:var(--accent); background:#eef3ff; color:var(--accent); }
  #drop strong { color:var(--ink); display:block; margin-bottom:4px; }
  #filename { margin-top:8px; font-size:13px; color:var(--ink); word-break:break-all; min-height:18px; }
  label { display:block; font-size:13px; color:var(--muted); margin:12px 0 4px; }
  input[type=text], input[type=date], input[type=password], select { width:100%; padding:7px 9px; border:1px solid #cdd3dc; border-radius:6px; font:inherit; background:#fff; }
  button { margin-top:14px; width:100%; padding:9px; border:0; border-radius:6px; background:var(--accent); color:#fff; font:inherit; font-weight:600; cursor:pointer; }
  button:disabled { background:#9fb1d9; cursor:default; }
  .hint { font-size:12px; color:var(--muted); margin-top:10px; }
  #error { display:none; background:var(--hot-bg); color:#8a1f14; border:1px solid #f3c1bb; border-radius:8px; padding:10px 12px; margin-bottom:14px; }
  .results { display:grid; grid-template-columns: minmax(0, 1.25fr) minmax(0, 1fr); gap:18px; align-content:start; }
  .wide { grid-column: 1 / -1; }
  .viewer { position:relative; background:#0d1117; border-radius:8px; min-height:260px; display:flex; align-items:center; justify-content:center; overflow:hidden; }
  .viewer .placeholder { color:#8b949e; font-size:14px; padding:40px; text-align:center; }
  .frame { position:relative; display:inline-block; line-height:0; }
  .frame img { display:block; image-rendering:auto; }
  .frame img.lungs { position:absolute; left:0; top:0; width:100%; height:100%; pointer-events:none; }
  .box { position:absolute; border:2px solid #fff; box-shadow:0 0 0 1px #000; border-radius:2px; pointer-events:none; }
  .toggle { display:flex; gap:6px; margin-top:10px; }
  .toggle button { margin:0; width:auto; padding:5px 12px; background:#e9edf3; color:var(--ink); font-weight:500; }
  .toggle button.on { background:var(--accent); color:#fff; }
  #findings { list-style:none; margin:0; padding:0; }
  #findings li { display:grid; grid-template-columns: 1fr 60px; gap:4px 10px; align-items:center; padding:7px 8px; border-radius:6px; margin-bottom:4px; border:1px solid transparent; }
  #findings li .name { font-weight:600; }
  #findings li .p { text-align:right; font-variant-numeric: tabular-nums; }
  #findings li .bar { grid-column:1 / -1; height:6px; background:#edf0f4; border-radius:3px; overflow:hidden; }
  #findings li .bar span { display:block; height:100%; background:#98a2b3; }
  #findings li.above { background:var(--hot-bg); border-color:#f3c1bb; }
  #findings li.above .name, #findings li.above .p { color:var(--hot); }
  #findings li.above .bar span { background:var(--hot); }
  /* A normal-like class (NORMAL, No Finding) is good news: never alarm red. */
  #findings li.above.normal { background:var(--ok-bg); border-color:#b7dfc8; }
  #findings li.above.normal .name, #findings li.above.normal .p { color:var(--ok); }
  #findings li.above.normal .bar span { background:var(--ok); }
  #warnings { display:none; background:#fff8e1; color:#6b4e00; border:1px solid #f0d68a; border-radius:8px; padding:8px 10px; margin:0 0 10px; font-size:13px; }
  .slider { margin-top:14px; padding-top:12px; border-top:1px solid var(--line); }
  .slider input { width:100%; }
  .slider .row { display:flex; justify-content:space-between; font-size:13px; color:var(--muted); }
  .meta { font-size:12px; color:var(--muted); margin-top:12px; overflow-wrap:anywhere; }
  .summary { font-size:14px; margin:0 0 10px; }
  .summary b { color:var(--hot); }
  .summary b.normal { color:var(--ok); }
  #gallery { display:grid; grid-template-columns: repeat(auto-fill, minmax(130px, 1fr)); gap:12px; }
  .case { border:1px solid var(--line); border-radius:8px; overflow:hidden; background:#fafbfc; font-size:12px; }
  .case img { width:100%; aspect-ratio:1/1; object-fit:cover; background:#0d1117; display:block; }
  .case div { padding:6px 8px; }
  .tag { display:inline-block; background:#e9edf3; border-radius:4px; padding:1px 6px; margin:2px 2px 0 0; }
  .tag.sick { background:var(--hot-bg); color:var(--hot); }
  #timeline img { max-width:100%; border:1px solid var(--line); border-radius:6px; }
  .verdict { font-weight:600; }
  .verdict.worsening { color:var(--hot); } .verdict.improving { color:var(--ok); }
  .muted { color:var(--muted); font-size:13px; }
  .hidden { display:none !important; }
  @media (max-width: 900px) { main, .results { grid-template-columns: 1fr; } }
  /* Phones: title and status on one line, the subtitle on one line below (clipped, never wrapped). */
  @media (max-width: 600px) {
    header { padding:10px 14px; gap:2px 12px; }
    header .sub { order:3; flex-basis:100%; min-width:0; font-size:12px; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
    header .status { white-space:nowrap; overflow:hidden; text-overflow:ellipsis; max-width:65%; }
    main { padding:12px 10px 30px; }
  }
</style>
</head>
<body>
<header>
  <h1>cxrkit</h1><span class="sub">Chest X-ray analysis &middot; research use only, not for diagnosis</span>
  <span class="status" id="status">connecting&hellip;</span>
</header>
<main>
  <section class="card" id="controls">
    <h2>Image</h2>
    <div id="drop" tabindex="0"><strong>Drop an X-ray here</strong>or click to choose a file<br><span class="muted">PNG, JPEG or DICOM</span></div>
    <input type="file" id="file" class="hidden" accept=".png,.jpg,.jpeg,.dcm,.dicom,image/png,image/jpeg,application/dicom">
    <div id="filename"></div>
    <label for="model">Model</label>
    <select id="model"></select>
    <label for="patient">Patient ID <span class="muted">(optional; read from DICOM)</span></label>
    <input type="text" id="patient" autocomplete="off">
    <label for="date">Study date <span class="muted">(optional)</span></label>
    <input type="date" id="date">
    <div id="keyrow" class="hidden">
      <label for="apikey">API key</label>
      <input type="password" id="apikey" autocomplete="off">
    </div>
    <button id="go" disabled>Analyse</button>
    <p class="hint">Choose an image, add the patient ID and study date if you have them, then Analyse. Each analysis is recorded in the case store (model, input hash, patient ID and study date when given).</p>
  </section>
  <section>
    <div id="error"></div>
    <div class="results">
      <div class="card">
        <h2>Heatmap</h2>
        <div class="viewer" id="viewer"><div class="placeholder">Choose an image to see the model's findings and the regions that drove them.</div></div>
        <div class="toggle hidden" id="viewtoggle">
          <button id="showheat" class="on">Heatmap</button><button id="showorig">Original</button><button id="showboxes" class="on">Boxes</button><button id="showlungs" title="Lung outlines from the lung segmenter (POST /v1/segment)">Lungs</button>
        </div>
      </div>
      <div class="card">
        <h2>Findings</h2>
        <div id="warnings" role="alert"></div>
        <p class="summary" id="summary"><span class="muted">No image analysed yet.</span></p>
        <ul id="findings"></ul>
        <div class="slider hidden" id="sliderbox">
          <div class="row"><span>Threshold</span><span id="thval">0.50</span></div>
          <input type="range" id="threshold" min="0" max="1" step="0.01" value="0.5">
          <div class="row"><span>Classes at or above it are highlighted.</span><a href="#" id="reset">model default</a></div>
        </div>
        <div class="meta" id="meta"></div>
      </div>
      <div class="card wide hidden" id="similarcard">
        <h2>Similar cases</h2>
        <div id="gallery"></div>
      </div>
      <div class="card wide hidden" id="timelinecard">
        <h2>Patient timeline</h2>
        <p id="tlsummary"></p>
        <div id="timeline"></div>
      </div>
    </div>
  </section>
</main>
<script>
"use strict";
const $ = (s) => document.querySelector(s);
const S = { file: null, result: null, health: null, models: {}, view: "heat", boxes: true, lungs: false, lungsData: null };

function esc(t) { const d = document.createElement("div"); d.textContent = String(t ?? ""); return d.innerHTML; }
function headers() { const k = $("#apikey").value.trim(); return k ? { "X-API-Key": k } : {}; }
function showError(msg) { const e = $("#error"); e.textContent = msg; e.style.display = msg ? "block" : "none"; }

async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { ...headers(), ...(opts.headers || {}) } });
  if (!r.ok) {
    let msg = r.statusText;
    try { const j = await r.json(); msg = typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail); } catch (e) {}
    if (r.status === 401) { $("#keyrow").classList.remove("hidden"); }
    const err = new Error(msg); err.status = r.status; throw err;
  }
  return r;
}
async function blobUrl(path) { const r = await api(path); return URL.createObjectURL(await r.blob()); }

async function init() {
  try {
    S.health = await (await fetch("/health")).json();
    if (S.health.api_key_required) $("#keyrow").classList.remove("hidden");
    $("#status").textContent = `${S.health.models.length} model(s)` + (S.health.index ? " \u00b7 similar-case index" : "") + ` \u00b7 store: ${S.health.store.backend}`;
    await loadModels();
  } catch (e) { $("#status").textContent = "offline"; showError("Cannot reach the server: " + e.message); }
}
async function loadModels() {
  try {
    const j = await (await api("/v1/models")).json();
    const sel = $("#model"); sel.innerHTML = "";
    for (const m of j.models) {
      S.models[m.name] = m;
      const o = document.createElement("option"); o.value = m.name;
      o.textContent = `${m.name} (${m.architecture}, ${m.classes.length} classes)`;
      if (m.name === j.default) o.selected = true;
      sel.appendChild(o);
    }
    showError("");
  } catch (e) { showError(e.status === 401 ? "This server needs an API key: enter it on the left." : e.message); }
}

const NORMAL_RE = /^(normal|no[ _]finding|healthy|negative)$/i;
const PLACEHOLDER = '<div class="placeholder">Choose an image to see the model\'s findings and the regions that drove them.</div>';

// Analysis starts only from the Analyse button: the patient ID and date can be typed after choosing a file.
function setFile(f) {
  if (!f) return;
  S.file = f; $("#filename").textContent = `${f.name} (${(f.size / 1024).toFixed(0)} KB)`;
  clearResults(); $("#go").disabled = false;
}
// Nothing of a previous image may stay on screen beside a new file or a failed analysis.
function clearResults() {
  S.result = null; S.lungsData = null;
  $("#findings").innerHTML = ""; $("#meta").innerHTML = "";
  $("#summary").innerHTML = '<span class="muted">No image analysed yet.</span>';
  $("#viewer").innerHTML = PLACEHOLDER;
  showWarnings([]);
  for (const id of ["#viewtoggle", "#sliderbox", "#similarcard", "#timelinecard"]) $(id).classList.add("hidden");
  $("#gallery").innerHTML = ""; $("#timeline").innerHTML = ""; $("#tlsummary").innerHTML = "";
}
function showWarnings(list) {
  const w = $("#warnings");
  w.innerHTML = list.map((t) => `<div>&#9888; ${esc(t)}</div>`).join("");
  w.style.display = list.length ? "block" : "none";
}
const drop = $("#drop");
drop.addEventListener("click", () => $("#file").click());
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("#file").click(); });
$("#file").addEventListener("change", (e) => setFile(e.target.files[0]));
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
drop.addEventListener("drop", (e) => setFile(e.dataTransfer.files[0]));
$("#go").addEventListener("click", analyse);
$("#apikey").addEventListener("change", loadModels);
$("#threshold").addEventListener("input", recolour);
$("#reset").addEventListener("click", (e) => { e.preventDefault(); if (S.result) { $("#threshold").value = S.result.default_threshold; recolour(); } });
$("#showheat").addEventListener("click", () => { S.view = "heat"; drawImage(); });
$("#showorig").addEventListener("click", () => { S.view = "orig"; drawImage(); });
$("#showboxes").addEventListener("click", () => { S.boxes = !S.boxes; drawImage(); });
$("#showlungs").addEventListener("click", toggleLungs);

// The lung outlines are fetched once per image, only when asked for, and laid over whichever view is shown.
async function toggleLungs() {
  S.lungs = !S.lungs;
  if (S.lungs && !S.lungsData && S.file) {
    const fd = new FormData(); fd.append("file", S.file);
    fd.append("include_mask", "false"); fd.append("include_overlay", "false"); fd.append("include_outline", "true");
    try { S.lungsData = await (await api("/v1/segment", { method: "POST", body: fd })).json(); }
    catch (e) { S.lungs = false; showError("Lungs: " + e.message); }
  }
  if (S.result) showWarnings([...(S.result.warnings || []), ...(S.lungs && S.lungsData && S.lungsData.warning ? [S.lungsData.warning] : [])]);
  drawImage();
}

async function analyse() {
  if (!S.file) return;
  showError(""); $("#go").disabled = true; $("#go").textContent = "Analysing\u2026";
  const fd = new FormData();
  fd.append("file", S.file);
  fd.append("model", $("#model").value);
  if ($("#patient").value.trim()) fd.append("patient_id", $("#patient").value.trim());
  if ($("#date").value) fd.append("study_date", $("#date").value);
  fd.append("include_image", "true"); fd.append("map_format", "none");
  try {
    const r = await (await api("/v1/explain", { method: "POST", body: fd })).json();
    S.result = r;
    $("#threshold").value = r.default_threshold;
    renderFindings(); drawImage();
    const tasks = [];
    if (S.health && S.health.index) tasks.push(similar()); else $("#similarcard").classList.add("hidden");
    if (r.patient_id) { if (!$("#patient").value) $("#patient").value = r.patient_id; tasks.push(timeline(r.patient_id, r.model.name)); }
    else $("#timelinecard").classList.add("hidden");
    await Promise.all(tasks);
  } catch (e) { clearResults(); showError(`Could not analyse ${S.file.name}: ${e.message}`); }
  finally { $("#go").disabled = false; $("#go").textContent = "Analyse"; }
}

function exclusive() { return S.result && S.result.model.task === "multiclass"; }
function renderFindings() {
  const r = S.result, ul = $("#findings"); ul.innerHTML = "";
  showWarnings(r.warnings || []);
  for (const c of r.ranked) {
    const li = document.createElement("li"); li.dataset.p = c.probability; li.dataset.cls = c.class;
    if (NORMAL_RE.test(c.class)) li.classList.add("normal");
    li.innerHTML = `<span class="name">${esc(c.class)}</span><span class="p">${c.probability.toFixed(3)}</span><span class="bar"><span style="width:${(100 * c.probability).toFixed(1)}%"></span></span>`;
    ul.appendChild(li);
  }
  // Exclusive classes: the call is the model's (arg-max, or its operating class at its threshold); a slider
  // would contradict it.
  $("#sliderbox").classList.toggle("hidden", exclusive());
  const m = r.model;
  $("#meta").innerHTML = `Model <b>${esc(m.name)}</b> ${esc(m.architecture)} v${esc(m.version)} &middot; sha256 ${esc(m.sha256.slice(0, 12))}&hellip;<br>`
    + `Analysis ${esc(r.analysis_id)} &middot; ${esc(r.input.format.toUpperCase())} ${r.input.width}&times;${r.input.height}`
    + (r.patient_id ? ` &middot; patient ${esc(r.patient_id)}${r.patient_id_source === "dicom" ? " (from DICOM)" : ""}` : "")
    + (r.study_date ? ` &middot; study ${esc(r.study_date)}` : "")
    + (m.intended_input && m.intended_input.description ? `<br>Made for: ${esc(m.intended_input.description)}` : "");
  recolour();
}
function named(list) { return list.map((c) => `<b class="${NORMAL_RE.test(c) ? "normal" : ""}">${esc(c)}</b>`).join(", "); }
function recolour() {
  const t = parseFloat($("#threshold").value); $("#thval").textContent = t.toFixed(2);
  if (!S.result) return;
  const items = [...document.querySelectorAll("#findings li")];
  if (exclusive()) {
    const call = S.result.findings[0], p = S.result.probabilities[call];
    const [op, t] = Object.entries(S.result.thresholds || {})[0] || [];
    const why = op === undefined ? `The most probable of ${S.result.ranked.length} exclusive classes.`
      : call === op ? `${esc(op)} is called at or above ${t.toFixed(2)} (its operating point), even when another class is more probable.`
      : `${esc(op)} is below its operating point ${t.toFixed(2)}; the most probable other class.`;
    items.forEach((li) => li.classList.toggle("above", li.dataset.cls === call));
    $("#summary").innerHTML = `Call: ${named([call])} (${p.toFixed(2)})<br><span class="muted">${why}</span>`;
    return;
  }
  const above = [];
  for (const li of items) {
    const on = parseFloat(li.dataset.p) >= t; li.classList.toggle("above", on);
    if (on) above.push(li.dataset.cls);
  }
  $("#summary").innerHTML = `Model findings: ${named(S.result.findings) || "<b>none</b>"}<br><span class="muted">At ${t.toFixed(2)}: ${above.map(esc).join(", ") || "none above"}</span>`;
}

function drawImage() {
  const r = S.result; if (!r) return;
  const e = r.explanation;
  const src = "data:image/png;base64," + (S.view === "heat" ? e.overlay_png_base64 : r.image_png_base64);
  let boxes = "";
  if (S.boxes) for (const b of e.boxes) {
    boxes += `<div class="box" style="left:${100 * b.x / r.input.width}%;top:${100 * b.y / r.input.height}%;width:${100 * b.w / r.input.width}%;height:${100 * b.h / r.input.height}%"></div>`;
  }
  // Fit the image to the viewer (up or down), keeping its aspect ratio, so the boxes stay aligned.
  const vw = Math.max(200, $("#viewer").clientWidth - 16), scale = Math.min(vw / r.input.width, 520 / r.input.height);
  const w = Math.round(r.input.width * scale), h = Math.round(r.input.height * scale);
  const lungs = S.lungs && S.lungsData ? `<img class="lungs" id="lungoutline" alt="lung outlines" src="data:image/png;base64,${S.lungsData.outline_png}">` : "";
  $("#viewer").innerHTML = `<div class="frame"><img id="heatmap" alt="heatmap of ${esc(e.target)} over the X-ray" src="${src}" width="${w}" height="${h}">${lungs}${boxes}</div>`;
  $("#viewtoggle").classList.remove("hidden");
  $("#showheat").classList.toggle("on", S.view === "heat"); $("#showorig").classList.toggle("on", S.view === "orig");
  $("#showboxes").classList.toggle("on", S.boxes); $("#showlungs").classList.toggle("on", S.lungs);
}

async function similar() {
  const fd = new FormData(); fd.append("file", S.file); fd.append("k", "8");
  try {
    const j = await (await api("/v1/similar", { method: "POST", body: fd })).json();
    const g = $("#gallery"); g.innerHTML = "";
    for (const n of j.neighbours) {
      const d = document.createElement("div"); d.className = "case";
      const tags = (n.labels.length ? n.labels : ["no label"]).map((l) => `<span class="tag${/normal|no finding|no label/i.test(l) ? "" : " sick"}">${esc(l)}</span>`).join("");
      d.innerHTML = `<img alt="similar case ${n.rank}"><div>${tags}<br>similarity ${n.similarity.toFixed(3)}<br><span class="muted">${n.patient_id ? "patient " + esc(n.patient_id) : esc(n.file)}</span></div>`;
      g.appendChild(d);
      blobUrl(n.image_url).then((u) => { d.querySelector("img").src = u; }).catch(() => {});
    }
    $("#similarcard").classList.remove("hidden");
  } catch (e) { showError("Similar cases: " + e.message); }
}

async function timeline(pid, model) {
  const base = `/v1/patients/${encodeURIComponent(pid)}/timeline`, q = `?model=${encodeURIComponent(model)}`;
  try {
    const t = await (await api(base + q)).json();
    const drift = t.drift === null ? "" : ` (drift ${t.drift >= 0 ? "+" : ""}${t.drift.toFixed(2)})`;
    $("#tlsummary").innerHTML = `${t.n_studies} stud${t.n_studies === 1 ? "y" : "ies"} of patient ${esc(pid)}: <span class="verdict ${esc(t.verdict)}">${esc(t.verdict)}</span>${drift}`;
    if (t.n_studies < 2) {
      $("#timeline").innerHTML = `<p class="muted">Severity ${t.studies[0].severity.toFixed(2)} on ${esc(t.studies[0].study_date)}${t.analyses[0].study_date_source === "recorded" ? "" : " (date of analysis: no study date given)"}. The plot appears from the patient's second study on.</p>`;
    } else {
      const url = await blobUrl(base + ".png" + q);
      $("#timeline").innerHTML = `<img id="timelineplot" alt="severity over time" src="${url}">`;
    }
    $("#timelinecard").classList.remove("hidden");
  } catch (e) { showError("Timeline: " + e.message); }
}
window.addEventListener("resize", () => drawImage());
init();
</script>
</body>
</html>
"""
