// The mlstack dashboard: reads the metadata server's own API (session cookie, GET only).
"use strict";

const POLL_MS = 2000;
let timers = [];

function el(tag, attrs, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path) {
  const resp = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (resp.status === 401) throw new Error("not logged in: run `mlstack ui` for a login link");
  if (!resp.ok) {
    let detail = resp.statusText;
    try { detail = (await resp.json()).detail; } catch (_) { /* not JSON */ }
    const err = new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    err.status = resp.status;
    throw err;
  }
  return resp.json();
}

function badge(status) { return el("span", { class: `badge s-${status}`, text: status }); }
function when(iso) { return iso ? new Date(iso).toLocaleString() : ""; }
function seconds(a, b) {
  if (!a) return "";
  const end = b ? new Date(b) : new Date();
  return `${((end - new Date(a)) / 1000).toFixed(1)} s`;
}
function short(id) { return id ? id.slice(0, 10) : ""; }
function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
function every(fn) { fn(); timers.push(setInterval(fn, POLL_MS)); }
function show(...nodes) { const main = document.getElementById("main"); main.replaceChildren(...nodes); return main; }
function fail(err) { show(el("p", { class: "error", id: "error", text: String(err.message || err) })); }
function setStatus(text) { document.getElementById("status").textContent = text; }

// --- runs ------------------------------------------------------------------------------------

function runsView(query) {
  const params = new URLSearchParams(query);
  const pipeline = el("select", { id: "f-pipeline" }, el("option", { value: "", text: "all pipelines" }));
  const status = el("select", { id: "f-status" }, el("option", { value: "", text: "any status" }),
    ["pending", "running", "completed", "failed", "cancelled"].map((s) => el("option", { value: s, text: s })));
  const since = el("input", { id: "f-since", type: "date" });
  const limit = el("select", { id: "f-limit" }, ["50", "200", "1000"].map((n) => el("option", { value: n, text: `last ${n}` })));
  const body = el("tbody", { id: "runs-body" });
  const apply = () => {
    const q = new URLSearchParams();
    if (pipeline.value) q.set("pipeline", pipeline.value);
    if (status.value) q.set("status", status.value);
    if (since.value) q.set("since", since.value);
    if (limit.value !== "50") q.set("limit", limit.value);
    location.hash = `#/runs?${q}`;
  };
  for (const input of [pipeline, status, since, limit]) input.addEventListener("change", apply);
  status.value = params.get("status") || "";
  limit.value = params.get("limit") || "50";
  since.value = params.get("since") || "";
  show(el("h2", { text: "Runs" }),
    el("div", { class: "filters" }, pipeline, status, since, limit),
    el("table", { id: "runs" }, el("thead", {}, el("tr", {},
      ["Run", "Pipeline", "Stack", "Host", "Status", "Created", "Duration"].map((h) => el("th", { text: h })))), body));
  api("/pipelines").then((rows) => {
    for (const p of rows) pipeline.append(el("option", { value: p.name, text: p.name }));
    pipeline.value = params.get("pipeline") || "";
  }).catch(fail);
  every(async () => {
    const q = new URLSearchParams({ limit: limit.value });
    if (params.get("pipeline")) q.set("pipeline", params.get("pipeline"));
    if (params.get("status")) q.set("status", params.get("status"));
    try {
      let runs = await api(`/runs?${q}`);
      if (params.get("since")) runs = runs.filter((r) => r.created_at >= params.get("since"));
      body.replaceChildren(...runs.map((r) => el("tr", { "data-run": r.id },
        el("td", {}, el("a", { href: `#/run/${r.id}`, text: short(r.id) })),
        el("td", { text: r.pipeline }), el("td", { text: r.stack }), el("td", { class: "host", text: r.host || "" }),
        el("td", {}, badge(r.status)),
        el("td", { text: when(r.created_at) }), el("td", { text: seconds(r.started_at, r.ended_at) }))));
      setStatus(`${runs.length} runs · updated ${new Date().toLocaleTimeString()}`);
    } catch (err) { fail(err); }
  });
}

// --- one run: DAG, timeline, parameters, steps -----------------------------------------------

function graphOf(steps, edges) {
  const producedBy = new Map();
  for (const e of edges) if (e.direction === "output") producedBy.set(e.artifact_id, e.step_name);
  const links = new Set();
  for (const e of edges) {
    const from = producedBy.get(e.artifact_id);
    if (e.direction === "input" && from && from !== e.step_name) links.add(`${from}\u0000${e.step_name}`);
  }
  return { names: steps.map((s) => s.name), pairs: [...links].map((l) => l.split("\u0000")) };
}

const NODE_W = 150, NODE_H = 34;
let layoutCache = { key: null, layout: null };

// Layered layout by dagre (vendored in dagre.min.js); kept while the graph's shape is the same,
// so polling a running pipeline only recolours the nodes.
function layoutOf(graph) {
  const key = JSON.stringify([graph.names, graph.pairs]);
  if (layoutCache.key === key) return layoutCache.layout;
  const g = new dagre.graphlib.Graph();
  // network-simplex ranks small graphs most compactly; past 60 steps longest-path is 4-5x
  // faster (a 200-step fan-in pipeline: ~180 ms instead of ~850 ms) and ranks them alike.
  const ranker = graph.names.length > 60 ? "longest-path" : "network-simplex";
  g.setGraph({ rankdir: "LR", nodesep: 22, ranksep: 60, marginx: 20, marginy: 20, ranker });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of graph.names) g.setNode(n, { width: NODE_W, height: NODE_H });
  for (const [a, b] of graph.pairs) g.setEdge(a, b);
  dagre.layout(g);
  const nodes = new Map(graph.names.map((n) => [n, g.node(n)]));
  const edges = graph.pairs.map(([a, b]) => ({ a, b, points: g.edge(a, b).points }));
  const layout = { nodes, edges, width: Math.ceil(g.graph().width || 0), height: Math.ceil(g.graph().height || 0) };
  layoutCache = { key, layout };
  return layout;
}

function dagSvg(run, steps, graph, selected) {
  const { nodes, edges, width, height } = layoutOf(graph);
  const svg = el("svg:svg", { id: "dag", width, height, viewBox: `0 0 ${width} ${height}` },
    el("svg:defs", {}, el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: "auto" }, el("svg:path", { d: "M0,0 L10,5 L0,10 z", fill: "#8b95a5" }))));
  for (const { a, b, points } of edges) {
    const d = points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
    svg.append(el("svg:path", { class: "edge", "data-edge": `${a}->${b}`, d }));
  }
  for (const s of steps) {
    const p = nodes.get(s.name);
    if (!p) continue;
    const cached = s.status === "cached" ? " ⟲" : "";
    svg.append(el("svg:g", { class: `node${s.name === selected ? " selected" : ""}`, "data-step": s.name,
      "data-status": s.status, transform: `translate(${p.x - NODE_W / 2},${p.y - NODE_H / 2})`,
      onclick: () => { location.hash = `#/run/${run.id}/${encodeURIComponent(s.name)}`; } },
      el("svg:title", { text: `${s.name}: ${s.status}` }),
      el("svg:rect", { class: `s-${s.status}`, width: NODE_W, height: NODE_H, rx: 6 }),
      el("svg:text", { x: 10, y: NODE_H / 2 + 4, text: `${s.name}${cached}` })));
  }
  return svg;
}

function ganttSvg(steps) {
  const timed = steps.filter((s) => s.started_at);
  const W = 720, ROW = 22, LEFT = 130;
  const svg = el("svg:svg", { id: "timeline", width: W + LEFT + 20, height: Math.max(timed.length, 1) * ROW + 30 });
  if (!timed.length) { svg.append(el("svg:text", { x: 10, y: 20, text: "no step has started" })); return svg; }
  const now = Date.now();
  const t0 = Math.min(...timed.map((s) => Date.parse(s.started_at)));
  const t1 = Math.max(...timed.map((s) => (s.ended_at ? Date.parse(s.ended_at) : now)), t0 + 1);
  const x = (t) => LEFT + ((t - t0) / (t1 - t0)) * W;
  timed.forEach((s, i) => {
    const start = Date.parse(s.started_at), end = s.ended_at ? Date.parse(s.ended_at) : now;
    svg.append(el("svg:g", { class: "bar", "data-step": s.name, "data-start": start, "data-end": end },
      el("svg:text", { x: 4, y: i * ROW + 15, text: s.name }),
      el("svg:rect", { class: `s-${s.status}`, x: x(start), y: i * ROW + 4, height: ROW - 8,
        width: Math.max(x(end) - x(start), 2) }, el("svg:title", { text: `${s.name}: ${seconds(s.started_at, s.ended_at)}` }))));
  });
  svg.append(el("svg:text", { x: LEFT, y: timed.length * ROW + 20, text: `0 s … ${((t1 - t0) / 1000).toFixed(1)} s` }));
  return svg;
}

function runView(runId, stepName) {
  const header = el("div", { id: "run-header" });
  const dag = el("div", { id: "dag-box" });
  const gantt = el("div", { id: "timeline-box" });
  const params = el("div", { id: "params" });
  const detail = el("div", { id: "step-detail" });
  show(el("p", {}, el("a", { href: "#/runs", text: "← runs" })), header,
    el("h3", { text: "DAG" }), dag, el("h3", { text: "Timeline" }), gantt,
    el("div", { class: "grid" }, el("div", {}, el("h3", { text: "Parameters" }), params), detail));
  let shownStep = null;
  let tracker = null, askedTracker = false; // the MLflow UI of the run's stack, as last reported
  every(async () => {
    try {
      const [run, edges] = await Promise.all([api(`/runs/${runId}`), api(`/runs/${runId}/lineage`)]);
      if (!askedTracker) {
        askedTracker = true;
        try { tracker = ((await api(`/stacks/${encodeURIComponent(run.stack)}`)).tracker_url || "").replace(/\/+$/, "") || null; }
        catch (_) { tracker = null; } // not reported yet: the id is shown without a link
      }
      const done = ["completed", "failed", "cancelled"].includes(run.status);
      header.replaceChildren(el("h2", {}, `Run ${short(run.id)} · ${run.pipeline} `, badge(run.status)),
        el("p", {}, `stack ${run.stack}${run.host ? ` · driven from ${run.host}` : ""} · created ${when(run.created_at)} · duration ${seconds(run.started_at, run.ended_at)}`,
          run.tracker_run_id ? el("span", { id: "mlflow" }, ` · MLflow run `, tracker
            ? el("a", { href: `${tracker}/#/runs/${encodeURIComponent(run.tracker_run_id)}`, target: "_blank", rel: "noopener", text: run.tracker_run_id })
            : el("code", { text: run.tracker_run_id })) : ""),
        run.error ? el("p", { class: "error", text: run.error }) : "");
      dag.replaceChildren(dagSvg(run, run.steps, graphOf(run.steps, edges), stepName));
      gantt.replaceChildren(ganttSvg(run.steps));
      params.replaceChildren(paramTable(run.params));
      const step = run.steps.find((s) => s.name === stepName);
      if (step && (shownStep === null || shownStep.status !== step.status)) {
        shownStep = step;
        stepDetail(detail, run, step, edges);
      }
      if (!step && stepName) detail.replaceChildren(el("p", { class: "error", text: `no step ${stepName} in this run` }));
      if (done && timers.length && (!step || ["completed", "failed", "cached", "skipped", "cancelled"].includes(step.status))) {
        setStatus(`run ${run.status}`);
      } else setStatus(`updated ${new Date().toLocaleTimeString()}`);
    } catch (err) { fail(err); }
  });
}

function paramTable(obj) {
  const entries = Object.entries(obj || {});
  if (!entries.length) return el("p", { class: "note", text: "none" });
  return el("table", {}, el("tbody", {}, entries.map(([k, v]) =>
    el("tr", {}, el("th", { text: k }), el("td", {}, el("code", { text: JSON.stringify(v) }))))));
}

async function stepDetail(box, run, step, edges) {
  const mine = edges.filter((e) => e.step_id === step.id);
  const cache = (step.spec && step.spec.cache) || {};
  const ioBody = el("tbody", { id: "io" });
  const log = el("pre", { class: "log", id: "step-log" });
  box.replaceChildren(el("h3", {}, `Step ${step.name} `, badge(step.status)),
    el("p", {}, `duration ${seconds(step.started_at, step.ended_at)}`,
      step.spec && step.spec.tracker_run_id ? ` · MLflow run ${step.spec.tracker_run_id}` : ""),
    step.status === "cached" && cache.source_run
      ? el("p", { id: "cached-from" }, "cached: reused step of run ",
        el("a", { href: `#/run/${cache.source_run}/${encodeURIComponent(step.name)}`, text: short(cache.source_run) }))
      : "",
    step.error ? el("p", { class: "error", text: step.error }) : "",
    el("table", {}, el("thead", {}, el("tr", {}, ["", "Name", "Type", "Size", "Hash", "Materializer", "Lineage"]
      .map((h) => el("th", { text: h })))), ioBody),
    el("h4", { text: "Log" }), log);
  for (const e of mine) {
    const lineageCell = el("td", { class: "lineage" });
    const row = el("tr", { "data-artifact": e.artifact_id, "data-direction": e.direction },
      el("td", { text: e.direction }), el("td", { text: e.name }));
    ioBody.append(row);
    try {
      const [art, lin] = await Promise.all([api(`/artifacts/${e.artifact_id}`), api(`/artifacts/${e.artifact_id}/lineage`)]);
      row.append(el("td", { text: art.type_name }), el("td", { text: bytes(art.size) }),
        el("td", {}, el("code", { title: art.content_hash, text: art.content_hash.slice(0, 16) })),
        el("td", { text: art.materializer }), lineageCell);
      const link = (ref, label) => el("a", { class: `lineage-${label}`, href: `#/run/${ref.run_id}/${encodeURIComponent(ref.step_name)}`,
        text: `${label} ${ref.step_name} (${short(ref.run_id)})` });
      if (lin.producer && lin.producer.step_id !== step.id) lineageCell.append(link(lin.producer, "producer"), " ");
      for (const c of lin.consumers) if (c.step_id !== step.id) lineageCell.append(link(c, "consumer"), " ");
    } catch (err) { row.append(el("td", { class: "error", text: err.message })); }
  }
  followLog(log, step);
}

function followLog(pre, step) {
  let offset = 0;
  const live = ["pending", "running"].includes(step.status);
  const poll = async () => {
    if (!pre.isConnected) return; // the view moved on
    try {
      const chunk = await api(`/steps/${step.id}/log?offset=${offset}`);
      if (pre.classList.contains("note")) { pre.textContent = ""; pre.classList.remove("note"); }
      if (chunk.text) pre.append(chunk.text);
      offset = chunk.next_offset;
      if (chunk.next_offset < chunk.size) return poll();
      if (live) setTimeout(poll, POLL_MS);
    } catch (err) {
      if (err.status === 404 && live) { setTimeout(poll, POLL_MS); return; }
      if (err.status === 503) { // the store does not answer now: say why, and try again
        if (!offset) { pre.textContent = `${err.message} (retrying)`; pre.classList.add("note"); }
        setTimeout(poll, POLL_MS);
        return;
      }
      pre.textContent = err.message;
      pre.classList.add("note");
    }
  };
  poll();
}

// --- deployments and stacks ------------------------------------------------------------------

function deploymentsView() {
  const body = el("tbody", { id: "deployments-body" });
  show(el("h2", { text: "Deployments" }), el("table", { id: "deployments" }, el("thead", {}, el("tr", {},
    ["Name", "Stack", "Endpoint", "Model", "Version", "Status", "Run", "Updated"].map((h) => el("th", { text: h })))), body));
  every(async () => {
    try {
      const rows = await api("/deployments");
      body.replaceChildren(...rows.map((d) => el("tr", { "data-deployment": d.name },
        el("td", { text: d.name }), el("td", { text: d.stack }),
        el("td", {}, d.endpoint_url ? el("a", { href: d.endpoint_url, text: d.endpoint_url, rel: "noreferrer" }) : ""),
        el("td", { text: d.model_name }), el("td", { text: d.model_version }), el("td", {}, badge(d.status)),
        el("td", {}, d.run_id ? el("a", { href: `#/run/${d.run_id}`, text: short(d.run_id) }) : ""),
        el("td", { text: when(d.updated_at) }))));
      if (!rows.length) body.append(el("tr", {}, el("td", { colspan: 8, class: "note", text: "no deployments" })));
    } catch (err) { fail(err); }
  });
}

function duration(ms, fine = false) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return fine ? `${h}h ${m}m ${s % 60}s` : `${h}h ${m}m`;
  return `${m}m ${s % 60}s`;
}
function ttlLeft(expires) {
  if (!expires) return "no TTL";
  const left = new Date(expires) - new Date();
  return left > 0 ? `${duration(left, true)} left` : "expired";
}
function usd(n) { return n === null || n === undefined ? "unknown" : `$${n.toFixed(2)}`; }

// The stack as `mlstack up`, `extend` and `ui` last reported it (the server cannot see the CLI's
// state); age and the TTL countdown tick here, health and spend are as of `checked_at`.
function stacksView() {
  const body = el("tbody", { id: "stacks-body" });
  const services = el("div", { id: "services" });
  show(el("h2", { text: "Stacks" }),
    el("table", { id: "stacks" }, el("thead", {}, el("tr", {},
      ["Stack", "Provider", "Status", "Age", "TTL", "Health", "Spend so far", "Runs", "Running", "Failed", "Last run"]
        .map((h) => el("th", { text: h })))), body), services);
  let reports = [], counts = new Map();
  const draw = () => {
    const names = new Set([...reports.map((r) => r.stack), ...counts.keys()]);
    body.replaceChildren(...[...names].sort().map((name) => {
      const r = reports.find((x) => x.stack === name);
      const c = counts.get(name) || { runs: 0, running: 0, failed: 0, last: null };
      const bad = r ? r.services.filter((s) => !["healthy", "ready"].includes(s.state)) : [];
      const health = !r ? "not reported" : bad.length ? `${bad.length} of ${r.services.length} unhealthy`
        : `${r.services.length} healthy`;
      const spend = r ? usd(r.spend_usd) + (r.budget_usd ? ` of ${usd(r.budget_usd)}` : "") : "";
      return el("tr", { "data-stack": name },
        el("td", { text: name }), el("td", { class: "provider", text: r ? r.provider : "" }),
        el("td", {}, r ? badge(r.status) : ""),
        el("td", { class: "age", text: r ? duration(new Date() - new Date(r.created_at)) : "" }),
        el("td", { class: "ttl", text: r ? ttlLeft(r.expires_at) : "" }),
        el("td", { class: "health", text: health }), el("td", { class: "spend", text: spend }),
        el("td", { text: c.runs }), el("td", { text: c.running }), el("td", { text: c.failed }),
        el("td", { text: when(c.last) }));
    }));
    services.replaceChildren(...reports.map((r) => el("div", { class: "stack-services", "data-stack": r.stack },
      el("h3", { text: `Services of ${r.stack}` }),
      el("p", { class: "note", text: `health and spend as of ${when(r.checked_at)} (refreshed by \`mlstack ui\`, \`up\` and \`extend\`)` }),
      el("table", {}, el("thead", {}, el("tr", {}, ["Service", "State", "URL", "Detail"].map((h) => el("th", { text: h })))),
        el("tbody", {}, r.services.map((s) => el("tr", { "data-service": s.name },
          el("td", { text: s.name }), el("td", {}, badge(s.state)), el("td", { text: s.url || "" }),
          el("td", { text: s.detail }))))))));
  };
  every(async () => {
    try {
      const [runs, stacks] = await Promise.all([api("/runs?limit=1000"), api("/stacks")]);
      counts = new Map();
      for (const r of runs) {
        const c = counts.get(r.stack) || { runs: 0, running: 0, failed: 0, last: r.created_at };
        c.runs++; if (r.status === "running") c.running++; if (r.status === "failed") c.failed++;
        counts.set(r.stack, c);
      }
      reports = stacks;
      draw();
    } catch (err) { fail(err); }
  });
  timers.push(setInterval(draw, 1000)); // the countdown ticks between polls
}

// --- routing -----------------------------------------------------------------------------------

function route() {
  for (const t of timers) clearInterval(t);
  timers = [];
  const hash = location.hash.slice(1) || "/runs";
  const [path, query] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.id === `nav-${parts[0]}`);
  if (parts[0] === "run" && parts[1]) runView(parts[1], parts[2] || null);
  else if (parts[0] === "deployments") deploymentsView();
  else if (parts[0] === "stacks") stacksView();
  else runsView(query || "");
}

window.addEventListener("hashchange", route);
route();
