// Tailor dashboard: job list and submit form, per-job progress, Pareto scatter for any two
// objectives coloured by generation, hypervolume per generation, a sortable candidate table,
// candidate detail (layer diagram and lineage), devices. Polls with ?since= every 3 s and
// applies the candidates each poll returns; it never refetches the whole candidate list.
// The API prefix comes from the page (the server fills it in), operator colours from the
// catalog endpoint.
"use strict";
const API = document.documentElement.dataset.api;
let timer = null;
let colours = null;  // operator class -> colour, from GET /catalog (loaded once)

async function operatorColours() {
  if (!colours) {
    const catalog = await get("/catalog");
    colours = Object.fromEntries(catalog.operators.map(o => [o.name, o.colour]));
  }
  return colours;
}

async function get(path) {
  // "no-cache": the browser revalidates its copy with If-None-Match; unchanged views are 304.
  const r = await fetch(API + path, {cache: "no-cache"});
  if (!r.ok) throw new Error(`${r.status} ${await r.text()}`);
  return r.json();
}
function esc(s) { return String(s).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c])); }
function fmt(v) {
  if (typeof v !== "number") return v ?? "";
  return Number.isInteger(v) || Math.abs(v) >= 1000 ? Math.round(v).toLocaleString("en") : v.toPrecision(4);
}
const title = text => ({text});
const view = () => document.getElementById("view");

async function jobsPage() {
  const data = await get("/jobs?limit=100");
  view().innerHTML = `<h2>Jobs (${data.count})</h2>
    <table id="jobs"><tr><th>id</th><th class="left">name</th><th class="left">status</th><th>generations</th><th>evaluations</th></tr>
    ${data.items.map(j => `<tr><td><a href="#/jobs/${j.id}">${j.id}</a></td><td class="left">${esc(j.name)}</td>
      <td class="left">${j.status}</td><td>${j.generations_done}/${j.generations_total}</td><td>${j.evaluations_done}</td></tr>`).join("")}</table>
    <h3>Submit a job</h3>
    <p>Admin key <input id="key" type="password" size="40"></p>
    <textarea id="spec">{"name": "my-search", "objectives": ["perplexity", "params"],
 "evolution": {"population": 8, "generations": 4},
 "training": {"tokens": 40000, "tokenizer": {"kind": "byte"}},
 "search_space": {"widths": [32, 64], "vocab_size": 257}}</textarea>
    <p><button id="submit">Submit</button> <span id="result"></span></p>`;
  document.getElementById("submit").onclick = async () => {
    const out = document.getElementById("result");
    try {
      const r = await fetch(API + "/jobs", {method: "POST", headers: {"Content-Type": "application/json",
        "Authorization": "Bearer " + document.getElementById("key").value}, body: document.getElementById("spec").value});
      const body = await r.json();
      out.className = r.ok ? "" : "error";
      out.textContent = r.ok ? `job ${body.id} queued` : body.detail;
      if (r.ok) location.hash = `#/jobs/${body.id}`;
    } catch (e) { out.className = "error"; out.textContent = e.message; }
  };
}

async function devicesPage() {
  // Ready to measure, or why not and the fix (the agent's preflight, sent with its heartbeats).
  const devices = await get("/devices");
  const readiness = d => d.ready
    ? `ready${d.runner ? ` <small>${esc(runnerLabel(d.runner))}</small>` : ""}`
    : `<span class="error">not ready: ${esc(d.not_ready_reason || "")}</span>` +
      (d.fix ? `<br><small>fix: ${esc(d.fix)}</small>` : "");
  view().innerHTML = `<h2>Devices</h2><table id="devices"><tr><th>id</th><th class="left">name</th>
    <th class="left">device class</th><th class="left">state</th><th class="left">online</th>
    <th class="left">ready</th><th>cores</th><th>RAM GiB</th></tr>
    ${devices.map(d => `<tr data-device="${d.id}"><td>${d.id}</td>
      <td class="left">${esc(d.name)}</td><td class="left">${esc(d.model)}</td>
      <td class="left">${d.state}</td><td class="left">${d.online ? "online" : "offline"}</td>
      <td class="left readiness">${readiness(d)}</td>
      <td>${d.properties.cpu_count}</td>
      <td>${(d.properties.ram_bytes / 2 ** 30).toFixed(1)}</td></tr>`).join("")}</table>`;
}

function runnerLabel(r) {
  // Which runner build took a measurement: name, release line, onnxruntime version, sha256.
  if (!r) return "runner build not recorded";
  const version = r.onnxruntime_version ? `onnxruntime ${r.onnxruntime_version}` : "";
  const sha = r.sha256 ? `sha256 ${r.sha256.slice(0, 12)}` : "";
  return [r.name, r.release_line, version, sha].filter(Boolean).join(" ");
}

function jobState(id) {
  return {id, since: 0, generations: [], candidates: new Map(), objectives: [], sort: {key: "id", dir: 1},
          x: null, y: null, selected: null, status: ""};
}

async function jobPage(id) {
  const state = jobState(id);
  const job = await get(`/jobs/${id}`);
  state.objectives = job.spec.objectives;
  [state.x, state.y] = [state.objectives[0], state.objectives[1] || state.objectives[0]];
  const options = sel => state.objectives.map(o => `<option ${o === sel ? "selected" : ""}>${esc(o)}</option>`).join("");
  view().innerHTML = `<h2>Job ${id}: ${esc(job.name)}</h2>
    <p>status <span class="status" id="status"></span> · generation <span id="progress"></span> · <span id="evaluations"></span> evaluations</p>
    <p class="warning" id="warnings"></p>
    <p id="compute"></p>
    <div id="rungs" hidden></div>
    <div class="row"><div><div id="pareto" class="plot"></div>
      x <select id="x">${options(state.x)}</select> y <select id="y">${options(state.y)}</select></div>
      <div id="hv" class="plot"></div></div>
    <div id="scale" hidden></div>
    <div class="row" id="surrogate" hidden><div id="predicted" class="plot"></div><div id="accuracy" class="plot"></div></div>
    <div class="row"><div><h3>Candidates</h3><table id="candidates"></table></div><div id="detail"></div></div>`;
  document.getElementById("x").onchange = e => { state.x = e.target.value; drawPareto(state); };
  document.getElementById("y").onchange = e => { state.y = e.target.value; drawPareto(state); };
  const poll = async () => {
    try { await refresh(state); } catch (e) { console.error(e); }
  };
  await poll();
  timer = setInterval(poll, 3000);
}

async function refresh(state) {
  const data = await get(`/jobs/${state.id}/generations?since=${state.since}`);
  const job = await get(`/jobs/${state.id}`);
  document.getElementById("status").textContent = job.status;
  document.getElementById("progress").textContent = `${job.generations_done}/${job.generations_total}`;
  document.getElementById("evaluations").textContent = job.evaluations_done;
  document.getElementById("warnings").textContent = (job.warnings || []).join(" · ");
  // The new generations' candidates (their populations, fronts and every candidate born since):
  // a candidate's metrics are final once its generation is written, so merging is enough.
  data.candidates.forEach(c => state.candidates.set(c.id, c));
  if (data.generations.length) {
    state.generations.push(...data.generations);
    state.since = data.generations[data.generations.length - 1].index + 1;
  }
  drawPareto(state); drawHypervolume(state); drawTable(state); drawPredictions(state); drawCompute(state);
  if (job.spec.scale && data.generations.length) await drawScale(state);
}

// Scale-up jobs: the search-scale and the scale-up ranking side by side, and Kendall tau.
async function drawScale(state) {
  const {report} = await get(`/jobs/${state.id}/scale`);
  const box = document.getElementById("scale");
  if (!report) return;
  box.hidden = false;
  const rows = [...report.members].sort((a, b) => (a.search_rank || 1e9) - (b.search_rank || 1e9));
  const mark = on => on ? "●" : "";
  box.innerHTML = `<h3>Scale-up check of job <a href="#/jobs/${report.source_job}">${report.source_job}</a></h3>
    <p id="scale-tau">Kendall tau between the rankings: ${report.kendall_tau === null ? "n/a" : esc(fmt(report.kendall_tau))}
      over ${report.compared} members; ${report.kept_on_front} of ${report.search_front_members} front members stay on the front</p>
    <table id="scale-table"><tr><th class="left">member</th><th>search rank</th><th>search perplexity</th><th>on front</th>
      <th>scale-up rank</th><th>scale-up perplexity</th><th>on front</th><th>params</th></tr>
    ${rows.map(r => `<tr><td class="left">#${r.candidate} ← job ${report.source_job} #${r.source_candidate} (${esc(r.origin)})</td>
      <td>${r.search_rank ?? ""}</td><td>${esc(fmt(r.search_perplexity))}</td><td>${mark(r.search_front)}</td>
      <td>${r.scaled_rank ?? ""}</td><td>${r.scaled_perplexity === null ? "" : esc(fmt(r.scaled_perplexity))}</td><td>${mark(r.scaled_front)}</td>
      <td>${r.params === null ? "" : esc(fmt(r.params))}</td></tr>`).join("")}</table>`;
}

// Surrogate jobs: what was predicted for each evaluated offspring against what was measured
// (for the x-axis objective), and the predictor's Kendall tau per generation.
function drawPredictions(state) {
  const predicted = [...state.candidates.values()].filter(c => c.predictions && Object.keys(c.predictions).length);
  document.getElementById("surrogate").hidden = !predicted.length;
  if (!predicted.length) return;
  const metrics = [...new Set(predicted.flatMap(c => Object.keys(c.predictions)))];
  const metric = metrics.includes(state.x) ? state.x : metrics[0];
  const pairs = predicted.filter(c => metric in c.predictions && metric in c.metrics);
  const xs = pairs.map(c => c.predictions[metric].mean), ys = pairs.map(c => c.metrics[metric]);
  const span = [Math.min(...xs, ...ys), Math.max(...xs, ...ys)];
  Plotly.react("predicted", [
    {x: xs, y: ys, mode: "markers", type: "scatter", name: "offspring",
     text: pairs.map(c => `#${c.id} gen ${c.generation}`)},
    {x: span, y: span, mode: "lines", type: "scatter", name: "predicted = measured", line: {dash: "dot"}}],
    {title: title(`predicted vs measured: ${metric}`), xaxis: {title: title("predicted")},
     yaxis: {title: title("measured")}, margin: {t: 40}}, {displayModeBar: false});
  const traces = metrics.map(m => {
    const gens = state.generations.filter(g => g.stats?.predictor?.generation?.[m]?.kendall_tau != null);
    return {x: gens.map(g => g.index), y: gens.map(g => g.stats.predictor.generation[m].kendall_tau),
            mode: "lines+markers", type: "scatter", name: m};
  });
  Plotly.react("accuracy", traces, {title: title("predictor Kendall tau per generation"),
    xaxis: {title: title("generation"), dtick: 1}, yaxis: {title: title("Kendall tau"), range: [-1, 1]},
    margin: {t: 40}}, {displayModeBar: false});
}

function front(state) {
  const last = state.generations[state.generations.length - 1];
  return new Set(last ? last.pareto : []);
}

function drawPareto(state) {
  const points = [...state.candidates.values()].filter(c => state.x in c.metrics && state.y in c.metrics);
  const pareto = front(state);
  const traces = [{x: points.map(c => c.metrics[state.x]), y: points.map(c => c.metrics[state.y]),
    text: points.map(c => `#${c.id} gen ${c.generation}`), mode: "markers", type: "scatter", name: "candidates",
    marker: {color: points.map(c => c.generation), colorscale: "Viridis", showscale: true, size: 9,
      colorbar: {title: title("generation")}, line: {width: points.map(c => pareto.has(c.id) ? 2 : 0), color: "#000"}}}];
  Plotly.react("pareto", traces, {title: title("Pareto front (outlined)"), xaxis: {title: title(state.x)},
    yaxis: {title: title(state.y)},
    margin: {t: 40}}, {displayModeBar: false});
  document.getElementById("pareto").on?.("plotly_click", ev => showCandidate(state, points[ev.points[0].pointIndex].id));
}

// Compute spent (orchestrator/compute_ledger.py) and, with training.fidelities, the rungs:
// candidates per rung and the rank agreement (Kendall tau) between consecutive rungs.
function drawCompute(state) {
  const last = state.generations[state.generations.length - 1];
  if (!last?.stats?.compute) return;
  const job = last.stats.compute.job;
  document.getElementById("compute").textContent = `compute ${fmt(job.compute_s)} CPU/GPU-s ` +
    `(training ${fmt(job.training_s)}, quantization ${fmt(job.quantization_s)}, export ${fmt(job.export_s)}) · ` +
    `phone ${fmt(job.device_s)} s · reused from the cache ${fmt(job.reused_s)} s`;
  const withRungs = state.generations.filter(g => g.stats?.rungs);
  const box = document.getElementById("rungs");
  if (!withRungs.length) return;
  box.hidden = false;
  const budgets = withRungs[0].stats.rungs.budgets;
  const tau = a => a.kendall_tau == null ? "–" : fmt(a.kendall_tau);
  box.innerHTML = `<h3>Rungs (training tokens)</h3><table id="rung-table"><tr><th>generation</th>` +
    budgets.map(b => `<th>${fmt(b)}</th>`).join("") + `<th>compute, s</th>` +
    withRungs[0].stats.rungs.agreement.map(a => `<th>τ ${fmt(a.tokens[0])}→${fmt(a.tokens[1])}</th>`).join("") + `</tr>` +
    withRungs.map(g => `<tr><td>${g.index}</td>${g.stats.rungs.reached.map(n => `<td>${n}</td>`).join("")}` +
      `<td>${fmt(g.stats.compute.generation.compute_s)}</td>${g.stats.rungs.agreement.map(a => `<td>${tau(a)}</td>`).join("")}</tr>`).join("") +
    `<tr><td class="left">job</td>${budgets.map(() => "<td></td>").join("")}<td>${fmt(last.stats.compute.job.compute_s)}</td>` +
    `${last.stats.rungs.job_agreement.map(a => `<td>${tau(a)}</td>`).join("")}</tr></table>`;
}

function drawHypervolume(state) {
  Plotly.react("hv", [{x: state.generations.map(g => g.index), y: state.generations.map(g => g.hypervolume),
    mode: "lines+markers", type: "scatter", name: "hypervolume"}],
    {title: title("hypervolume per generation"), xaxis: {title: title("generation"), dtick: 1},
     yaxis: {title: title("hypervolume")},
     margin: {t: 40}}, {displayModeBar: false});
}

function drawTable(state) {
  const pareto = front(state);
  const cols = ["id", "generation", "origin", "status", ...state.objectives];
  const value = (c, k) => k in c ? c[k] : c.metrics[k];
  const rows = [...state.candidates.values()].sort((a, b) => {
    const [va, vb] = [value(a, state.sort.key), value(b, state.sort.key)];
    return (va === vb ? 0 : (va ?? Infinity) < (vb ?? Infinity) ? -1 : 1) * state.sort.dir;
  });
  const table = document.getElementById("candidates");
  table.innerHTML = `<tr>${cols.map(k => `<th data-key="${esc(k)}" class="${typeof value(rows[0] || {metrics: {}}, k) === "string" ? "left" : ""}">${esc(k)}</th>`).join("")}</tr>` +
    rows.map(c => `<tr data-id="${c.id}" class="${pareto.has(c.id) ? "front" : ""}">${cols.map(k =>
      `<td class="${typeof value(c, k) === "string" ? "left" : ""}">${esc(fmt(value(c, k)))}</td>`).join("")}</tr>`).join("");
  table.querySelectorAll("th").forEach(th => th.onclick = () => {
    const key = th.dataset.key;
    state.sort = {key, dir: state.sort.key === key ? -state.sort.dir : 1};
    drawTable(state);
  });
  table.querySelectorAll("tr[data-id]").forEach(tr => tr.onclick = () => showCandidate(state, +tr.dataset.id));
}

async function showCandidate(state, id) {
  const [c, palette] = [await get(`/jobs/${state.id}/candidates/${id}`), await operatorColours()];
  const layers = c.genome.backbone.map((s, i) => `<span class="layer" style="background:${palette[s.op] || "#555"}"
      title="slot ${i}">${i}:${esc(s.op)}${s.share_weights !== null ? ` =w${s.share_weights}` : ""}${s.share_featurizer !== null ? ` =f${s.share_featurizer}` : ""}</span>`).join("");
  const link = x => `<a href="javascript:void(0)" data-cid="${x.id}">#${x.id}</a>`;
  const detail = document.getElementById("detail");
  detail.innerHTML = `<h3>Candidate #${c.id} <small>${esc(c.genome_hash)}</small></h3>
    <p>generation ${c.generation}, ${esc(c.origin)}, ${c.status}${c.failure ? ` — <span class="error">${esc(c.failure)}</span>` : ""}</p>
    <p>width ${c.genome.global.width}, ${c.genome.global.depth} slots, block repeat ${c.genome.global.block_repeat}, ${c.genome.global.tie_embeddings ? "tied" : "untied"} embeddings</p>
    <div class="layers" id="layers">${layers}</div>
    <table>${Object.entries(c.metrics).map(([k, v]) => `<tr><td class="left">${esc(k)}</td><td>${esc(fmt(v))}</td></tr>`).join("")}</table>
    ${precisionTable(c.metrics)}
    ${c.compute ? `<p class="compute">compute ${fmt(c.compute.compute_s)} s (training ${fmt(c.compute.training_s)}, quantization ${fmt(c.compute.quantization_s)}, export ${fmt(c.compute.export_s)}) · phone ${fmt(c.compute.device_s)} s · reused ${fmt(c.compute.reused_s)} s</p>` : ""}
    ${(c.rungs || []).length ? `<table class="rungs">${c.rungs.map(r => `<tr><td>${fmt(r.tokens)} tokens</td><td>perplexity ${fmt(r.perplexity)}</td><td>${fmt(r.compute_s)} s</td><td>${r.promoted === true ? "promoted" : r.promoted === false ? "stopped here" : ""}</td></tr>`).join("")}</table>` : ""}
    <p>parents: ${c.parents.map(link).join(" ") || "none"} · children: ${c.children.map(link).join(" ") || "none"}</p>
    <p>${c.artifacts.map(a => esc(a.name)).join(", ")}</p>
    ${(c.runner_warnings || []).map(w => `<p class="warning">${esc(w)}</p>`).join("")}
    ${measurementTable(c.measurements || [])}`;
  detail.querySelectorAll("a[data-cid]").forEach(a => a.onclick = () => showCandidate(state, +a.dataset.cid));
}

function splitPrecision(name) {
  // "decode_ms@64[phone:int4]" -> ["decode_ms@64[phone]", "int4"]; "perplexity[:int8]" -> ["perplexity", "int8"]
  const m = name.match(/^(.*)\[(.*?)(?::(int8|int4|float32))?\]$/);
  if (!m) return [name, "float32"];
  return [m[2] ? `${m[1]}[${m[2]}]` : m[1], m[3] || "float32"];
}

function precisionTable(metrics) {
  // Float and quantized side by side: one row per metric (per device class, fleets too),
  // one column per precision. Shown when the candidate has a quantized metric.
  const cells = new Map(), precisions = new Set();
  for (const [k, v] of Object.entries(metrics)) {
    const [base, p] = splitPrecision(k);
    precisions.add(p);
    if (!cells.has(base)) cells.set(base, {});
    cells.get(base)[p] = v;
  }
  if (precisions.size < 2 && precisions.has("float32")) return "";
  const cols = ["float32", "int8", "int4"].filter(p => precisions.has(p));
  const rows = [...cells.entries()].filter(([, byP]) => Object.keys(byP).some(p => p !== "float32"));
  return `<h4>By precision</h4><table class="precisions"><tr><th class="left">metric</th>${cols.map(p => `<th>${p}</th>`).join("")}</tr>` +
    rows.map(([base, byP]) => `<tr><td class="left">${esc(base)}</td>${cols.map(p => `<td>${p in byP ? esc(fmt(byP[p])) : ""}</td>`).join("")}</tr>`).join("") + "</table>";
}

function measurementTable(tasks) {
  // One row per (task, length): device, graph (and the revision its task was queued for),
  // median, p10-p90, n, peak memory, heat and method, runner; one row per task not measured.
  if (!tasks.length) return "";
  const rows = [];
  for (const t of tasks) {
    const r = t.report;
    const variant = t.variant ? ` ${esc(t.variant)}` : "";
    // The exporter's graph revision the task was queued for: numbers of older graphs stay
    // apart from this revision's (a job resumed across an upgrade, docs/search.md Restarts).
    const revision = t.graph_revision != null ? ` · revision ${esc(t.graph_revision)}` : "";
    if (!r) { rows.push(`<tr><td class="left">${esc(t.device_class)}${variant}</td><td class="left" colspan="7">${esc(t.state)}${revision}${t.last_error ? ` — ${esc(t.last_error)}` : ""}</td></tr>`); continue; }
    const hot = r.above_thermal_limit ? ` <span class="error">above ${esc(fmt(r.thermal_limit_celsius))} °C</span>` : "";
    const maxC = Math.max(...(r.thermal_before || []).map(z => z.celsius), -Infinity);
    for (const [kind, stats] of [["prefill", r.prefill], ["decode", r.decode]]) for (const s of stats) {
      rows.push(`<tr><td class="left">${esc(t.device_class)} #${t.device_id}${variant}${r.execution_provider && r.execution_provider !== "cpu" ? ` (${esc(r.execution_provider)})` : ""}</td><td class="left">${kind}@${s.length}${revision}</td>
        <td>${esc(fmt(s.median_ms))}</td><td>${esc(fmt(s.p10_ms))}–${esc(fmt(s.p90_ms))}</td><td>${s.n}</td>
        <td>${s.peak_memory_bytes ? esc(fmt(s.peak_memory_bytes / 2 ** 20)) : ""}</td>
        <td class="left">${isFinite(maxC) ? esc(fmt(maxC)) + " °C" : ""}${hot} ${esc(r.method || "")}</td>
        <td class="left">${esc(runnerLabel(t.runner_identity || r.runner_identity))}</td></tr>`);
    }
  }
  return `<h4>Measurements</h4><table class="measurements"><tr><th class="left">device</th><th class="left">graph</th><th>median ms</th><th>p10–p90</th><th>n</th><th>peak MB</th><th class="left">heat · method</th><th class="left">runner</th></tr>${rows.join("")}</table>`;
}

async function route() {
  if (timer) { clearInterval(timer); timer = null; }
  const hash = location.hash || "#/";
  try {
    const m = hash.match(/^#\/jobs\/(\d+)/);
    if (m) await jobPage(+m[1]);
    else if (hash.startsWith("#/devices")) await devicesPage();
    else await jobsPage();
  } catch (e) { view().innerHTML = `<p class="error">${esc(e.message)}</p>`; }
}
window.addEventListener("hashchange", route);
route();
