// The console's page: no build step, no framework. The live view comes from /api/stream
// (server-sent events: the server pushes the lab's state when it changes); commands are JSON
// POSTs carrying the session's CSRF token (lab.console.auth).
"use strict";

const $ = (sel) => document.querySelector(sel);
const ROLES = ["viewer", "operator", "supervisor"];
let me = null;          // {name, role, csrf}
let stream = null;
let layout = null;
let lastDone = -1;
let lastDetail = 0;
let shownCampaign = null;

function el(tag, attrs = {}, ...children) {
  const svg = ["svg", "rect", "circle", "line", "polyline", "text", "g", "path", "title"].includes(tag);
  const node = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.setAttribute("class", v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function may(needed) { return me && ROLES.indexOf(me.role) >= ROLES.indexOf(needed); }

async function api(method, path, body) {
  const options = { method, credentials: "same-origin", headers: {} };
  if (method !== "GET") {
    options.headers["Content-Type"] = "application/json";
    if (me) options.headers["X-CSRF-Token"] = me.csrf;
    options.body = JSON.stringify(body || {});
  }
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (response.status === 401 && path !== "/api/login") { signedOut(); }
  return { ok: response.ok, status: response.status, data };
}

function say(text, isError) {
  const box = $("#message");
  box.textContent = text;
  box.className = "message" + (isError ? " error" : "");
  box.hidden = !text;
}

async function command(path, body) {
  const r = await api("POST", path, body);
  const text = (r.data && (r.data.message || r.data.detail)) || `HTTP ${r.status}`;
  say(typeof text === "string" ? text : JSON.stringify(text), !r.ok);
  return r;
}

// --- sign-in ---------------------------------------------------------------------------------
function signedOut() {
  me = null;
  if (stream) { stream.close(); stream = null; }
  $("#main").hidden = true; $("#login").hidden = false;
  for (const id of ["#estop", "#release", "#logout"]) $(id).hidden = true;
  $("#who").textContent = "";
}

async function start() {
  const r = await api("GET", "/api/me");
  if (!r.ok) { signedOut(); return; }
  me = r.data;
  $("#login").hidden = true; $("#main").hidden = false; $("#logout").hidden = false;
  $("#who").textContent = `${me.name} (${me.role})`;
  $("#estop").hidden = false;
  $("#estop").disabled = !may("operator");
  $("#estop").title = may("operator") ? "stop every motion and process now" :
    "viewers cannot stop the lab: use the robot's hardware stop or ask an operator";
  for (const b of document.querySelectorAll(".operator")) b.hidden = !may("operator");
  for (const b of document.querySelectorAll(".supervisor")) b.hidden = !may("supervisor");
  $("#accounts-tab").hidden = !may("supervisor");
  const lay = await api("GET", "/api/layout");
  layout = lay.ok ? lay.data : null;
  const files = await api("GET", "/api/campaign_files");
  $("#start-name").replaceChildren(...(files.data || []).map((f) =>
    el("option", { value: f.name }, f.error ? `${f.name} (broken: ${f.error})` : `${f.name} (${f.workflow})`)));
  connect();
  loadCampaigns();
}

function connect() {
  if (stream) stream.close();
  stream = new EventSource("/api/stream");
  stream.onmessage = (e) => { const s = JSON.parse(e.data); render(s); shown(s); };
  stream.onerror = () => {
    // the console itself is down or restarting: EventSource tries again by itself
    showMissing(["the console does not answer (restarting?): trying again"]);
    api("GET", "/api/me");  // a 401 here means the session expired: back to sign-in
  };
}

// --- the live view -------------------------------------------------------------------------
function showMissing(lines) {
  const box = $("#missing");
  box.replaceChildren(...lines.map((l) => el("div", {}, l)));
  box.hidden = lines.length === 0;
}

// what the page showed and when (wall ms): `lab bench console` reads it to time a change in the
// lab to the page showing it; the last 2000 renders, a few hundred kB at most
window.labShown = [];
function shown(s) {
  if (!s.status) return;
  window.labShown.push([Date.now(), s.status.stamp, Object.fromEntries(s.status.stations.map((x) => [x.name, x.state]))]);
  if (window.labShown.length > 2000) window.labShown.shift();
}

let lastWorld = null;
function render(s) {
  document.body.dataset.version = s.version;
  lastWorld = s.world || lastWorld;
  showMissing(s.missing || []);
  const safety = s.safety;
  const banner = $("#banner");
  banner.hidden = !(safety && safety.stopped);
  if (safety && safety.stopped) banner.textContent = `EMERGENCY STOP by ${safety.by}: ${safety.reason || "(no reason given)"}`;
  $("#release").hidden = !(safety && safety.stopped && may("supervisor"));
  const st = s.status;
  const mode = $("#mode");
  mode.textContent = st ? st.mode : "no lab";
  mode.className = "badge " + (st ? st.mode : "");
  if (st) {
    $("#lab-summary").textContent = `${st.experiments_done} experiments done, ${st.experiments_running} running, ` +
      `${st.experiments_failed} failed; batches: ${st.active_batches.join(", ") || "none"}`;
    $("#lab-summary").dataset.done = st.experiments_done;
    renderTables(st);
    drawFloor(st);
    // the campaigns come from the store, not the stream: read again when a result came in, and the
    // campaign shown every 2 s (a batch may come to await approval with no result in between)
    const now = Date.now();
    if (st.experiments_done !== lastDone || now - lastDetail > 2000) {
      if (st.experiments_done !== lastDone) loadCampaigns();
      lastDone = st.experiments_done;
      lastDetail = now;
      if (shownCampaign) showCampaign(shownCampaign);
    }
  }
  $("#events").replaceChildren(...(s.events || []).slice().reverse().map((e) =>
    el("li", { class: e.level }, `${new Date(e.time * 1000).toLocaleTimeString()}  ${e.text}`)));
  if (!$("#tab-audit").hidden) loadAudit();
}

function renderTables(st) {
  $("#robots tbody").replaceChildren(...st.robots.map((r) => el("tr", { class: r.state, "data-robot": r.name },
    el("td", {}, r.name), el("td", {}, r.state + (r.message ? `: ${r.message}` : "")),
    el("td", {}, `${Math.round(r.battery * 100)} %${r.charging ? " (charging)" : ""}`),
    el("td", {}, r.docked_at || `${r.x.toFixed(2)}, ${r.y.toFixed(2)}`), el("td", {}, r.holding.join(", ")))));
  $("#stations tbody").replaceChildren(...st.stations.map((x) => el("tr", { class: x.state, "data-station": x.name },
    el("td", {}, x.name), el("td", {}, x.state + (x.message && x.state !== "idle" ? `: ${x.message}` : "")),
    el("td", {}, x.step), el("td", {}, x.state === "busy" ? `${Math.round(x.progress * 100)} %` : ""),
    el("td", {}, x.holding.join(", ")), el("td", {}, x.queue.join(", ")))));
  $("#steps").replaceChildren(...st.active_steps.map((t) => el("li", {}, t)));
}

function drawFloor(st) {
  const svg = $("#floor");
  if (!layout) return;
  const k = 100;                        // px per m; y up in the map frame, down on the page
  const H = layout.floor[1] * k;
  const states = Object.fromEntries(st.stations.map((x) => [x.name, x.state]));
  const parts = [el("rect", { x: 0, y: 0, width: layout.floor[0] * k, height: H, fill: "#fafafa" })];
  for (const s of layout.stations) {
    const across = Math.abs(Math.cos(s.yaw)) > 0.5;
    const w = (across ? s.depth : s.width) * k, h = (across ? s.width : s.depth) * k;
    parts.push(el("rect", { class: "station-box " + (states[s.name] || ""), x: s.x * k - w / 2, y: H - s.y * k - h / 2,
                            width: w, height: h }));
    parts.push(el("text", { class: "station-label", x: s.x * k - w / 2 + 4, y: H - s.y * k + 6 }, s.name));
  }
  // racks and trays where the world state puts them: in their station's box, or on the robot
  const carriers = ((lastWorld && lastWorld.objects) || []).filter((o) => !o.id.includes("/"));
  const placed = {}, aboard = [];
  const robotsAt = Object.fromEntries(st.robots.map((r) => [r.name, r]));
  const stationsAt = Object.fromEntries(layout.stations.map((s) => [s.name, s]));
  for (const o of carriers) {
    const owner = o.at.split("/")[0];
    const n = (placed[owner] = (placed[owner] || 0) + 1) - 1;
    let x, y;
    if (stationsAt[owner]) { x = stationsAt[owner].x * k - 20 + 14 * (n % 4); y = H - stationsAt[owner].y * k - 18 + 14 * Math.floor(n / 4); }
    else if (robotsAt[owner]) { x = robotsAt[owner].x * k - 6 + 14 * n; y = H - robotsAt[owner].y * k - 6; }
    else continue;
    (robotsAt[owner] ? aboard : parts).push(el("rect", { class: "carrier " + o.kind, "data-carrier": o.id,
      "data-at": o.at, x, y, width: 11, height: 11 }, el("title", {}, `${o.id} at ${o.at}`)));
  }
  for (const r of st.robots) {
    const cx = r.x * k, cy = H - r.y * k;
    parts.push(el("g", { "data-robot": r.name },
      el("circle", { class: "robot " + r.state, cx, cy, r: 28 }),
      el("line", { x1: cx, y1: cy, x2: cx + 40 * Math.cos(r.yaw), y2: cy - 40 * Math.sin(r.yaw), stroke: "#fff",
                   "stroke-width": 5 }),
      el("text", { class: "station-label", x: cx + 32, y: cy - 30 }, `${r.name} ${Math.round(r.battery * 100)}%`)));
  }
  svg.replaceChildren(...parts, ...aboard);  // what a robot carries, drawn over the robot
}

// --- campaigns -------------------------------------------------------------------------------
async function loadCampaigns() {
  const r = await api("GET", "/api/campaigns");
  if (!r.ok) return;
  $("#campaigns tbody").replaceChildren(...r.data.map((c) => {
    const actions = el("td", {});
    if (may("operator") && c.status === "running")
      actions.append(el("button", { onclick: () => command(`/api/campaigns/${c.id}/cancel`) }, "Cancel"));
    if (may("operator") && c.status !== "running" && c.status !== "done")
      actions.append(el("button", { onclick: () => command(`/api/campaigns/${c.id}/resume`) }, "Resume"));
    return el("tr", { "data-campaign": c.id, "data-status": c.status, "data-measured": c.measured },
      el("td", {}, el("a", { href: "#", onclick: (e) => { e.preventDefault(); showCampaign(c.id); } }, c.id)),
      el("td", {}, c.status + (c.note ? ` (${c.note})` : "")), el("td", {}, c.measured), el("td", {}, c.failed),
      el("td", {}, c.budget), el("td", {}, c.started_by), actions);
  }));
}

async function showCampaign(id) {
  const r = await api("GET", `/api/campaigns/${encodeURIComponent(id)}`);
  if (!r.ok) { say(r.data && r.data.detail, true); return; }
  shownCampaign = id;
  const c = r.data;
  $("#campaign-detail").hidden = false;
  $("#detail-title").textContent = `${c.id} (${c.workflow})`;
  $("#detail-summary").textContent = `${c.status}: ${c.measured} measured, ${c.failed} failed, ${c.running} running ` +
    `of ${c.budget}${c.awaiting.length ? `, ${c.awaiting.length} awaiting approval` : ""}; ${c.summary}`;
  $("#detail-report").href = `/api/campaigns/${encodeURIComponent(c.id)}/report/index.html`;
  drawBest(c);
  showApproval(c);
  $("#experiments tbody").replaceChildren(...c.experiments.map((x) => el("tr", { class: x.state },
    el("td", {}, x.index + (x.control ? " (control)" : "") + (x.chosen_by ? ` (chosen by ${x.chosen_by})` : "")),
    el("td", {}, x.batch), el("td", {}, x.state),
    el("td", {}, Object.entries(x.point).filter(([, v]) => v).map(([k, v]) => `${k} ${(+v).toPrecision(3)}`).join(", ")),
    el("td", {}, x.state === "failed" ? x.failure :
      Object.entries(x.values).map(([k, v]) => `${k} ${v === null ? "-" : (+v).toPrecision(4)}`).join(", ")),
    el("td", {}, x.attempts))));
}

// a batch held for approval: one row per experiment, one input per dimension, a drop box; the
// server checks every change against the campaign's space and says why it refuses one
let approvalShown = "";
function showApproval(c) {
  const box = $("#approval");
  box.hidden = !c.awaiting.length;
  if (!c.awaiting.length) { approvalShown = ""; return; }
  const batch = c.awaiting[0].batch;
  if (approvalShown === batch) return;  // keep what the supervisor is typing
  approvalShown = batch;
  $("#approval-batch").textContent = batch;
  $("#approval-rules").textContent = c.dimensions.map((d) => `${d.name} in [${d.low}, ${d.high}] ${d.unit}`).join("; ") +
    (c.constraints.length ? `; ${c.constraints.join("; ")}` : "");
  $("#approval-table thead").replaceChildren(el("tr", {}, el("th", {}, "#"), el("th", {}, "drop"),
    ...c.dimensions.map((d) => el("th", {}, d.name))));
  $("#approval-table tbody").replaceChildren(...c.awaiting.map((x) => el("tr", { "data-index": x.index },
    el("td", {}, x.index + (x.control ? " (control)" : "")),
    el("td", {}, el("input", { type: "checkbox", class: "drop" })),
    ...c.dimensions.map((d) => el("td", {}, el("input", { class: "dim", "data-dim": d.name, size: 7,
      value: String(x.point[d.name] ?? 0), "data-was": String(x.point[d.name] ?? 0), ...(x.control ? { disabled: "" } : {}) }))))));
  $("#approve-button").onclick = async () => {
    const drop = [], edits = {};
    for (const row of document.querySelectorAll("#approval-table tbody tr")) {
      const index = +row.dataset.index;
      if (row.querySelector(".drop").checked) { drop.push(index); continue; }
      for (const input of row.querySelectorAll("input.dim")) {
        if (input.value !== input.dataset.was) (edits[index] = edits[index] || {})[input.dataset.dim] = +input.value;
      }
    }
    const r = await command(`/api/campaigns/${encodeURIComponent(c.id)}/approve`, { batch, drop, edits });
    if (r.ok) { approvalShown = ""; showCampaign(c.id); }
  };
}

function drawBest(c) {
  const svg = $("#best-chart");
  const best = c.best_so_far.map((v, i) => [i + 1, v]).filter(([, v]) => v !== null);
  const ref = c.reference.map((p) => [p.n, p.best]);
  if (!best.length && !ref.length) { svg.replaceChildren(el("text", { class: "chart-text", x: 20, y: 40 },
    c.objectives.length > 1 ? "several objectives: see the report's Pareto plot" : "no result yet")); return; }
  const xs = best.map((p) => p[0]).concat(ref.map((p) => p[0]), [c.budget]);
  const ys = best.map((p) => p[1]).concat(ref.map((p) => p[1]), [0]);
  const X = (x) => 50 + 570 * x / Math.max(...xs), Y = (y) => 270 - 250 * y / (Math.max(...ys) || 1);
  const pts = (list) => list.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(" ");
  const stepped = ref.flatMap(([x, y], i) => (i ? [[x, ref[i - 1][1]], [x, y]] : [[0, y], [x, y]]));
  const o = c.objectives[0] || { name: "", unit: "" };
  svg.replaceChildren(
    el("line", { class: "chart-axis", x1: 50, y1: 270, x2: 620, y2: 270 }),
    el("line", { class: "chart-axis", x1: 50, y1: 20, x2: 50, y2: 270 }),
    el("text", { class: "chart-text", x: 300, y: 295 }, "experiments"),
    el("text", { class: "chart-text", x: 55, y: 15 }, `best ${o.name} so far${o.unit ? ` (${o.unit})` : ""}; max ` +
      `${Math.max(...ys).toPrecision(3)}`),
    el("polyline", { class: "chart-line", points: pts(best) }),
    ...(ref.length ? [el("polyline", { class: "chart-ref", points: pts(stepped) }),
      el("text", { class: "chart-text", x: 330, y: 250 }, c.reference_label)] : []));
}

// --- audit trail and accounts ------------------------------------------------------------------
let auditBusy = false;
async function loadAudit() {
  if (auditBusy) return;
  auditBusy = true;
  const r = await api("GET", "/api/audit");
  auditBusy = false;
  if (!r.ok) return;
  $("#audit tbody").replaceChildren(...r.data.map((a) => el("tr", { class: a.ok ? "" : "fault" },
    el("td", {}, new Date(a.time * 1000).toLocaleString()), el("td", {}, a.who), el("td", {}, a.via),
    el("td", {}, a.command), el("td", {}, JSON.stringify(a.params)), el("td", {}, a.outcome))));
}

async function loadAccounts() {
  const r = await api("GET", "/api/users");
  if (!r.ok) return;
  $("#accounts tbody").replaceChildren(...r.data.map((u) => {
    const pick = el("select", { onchange: (e) => command(`/api/users/${u.name}/role`, { role: e.target.value }) },
      ...ROLES.map((x) => { const o = el("option", {}, x); o.selected = x === u.role; return o; }));
    return el("tr", {}, el("td", {}, u.name), el("td", {}, pick),
      el("td", {}, el("button", { onclick: async () => { await command(`/api/users/${u.name}/remove`); loadAccounts(); } },
        "Remove")));
  }));
}

// --- wiring -------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("#login-button").disabled = true;
    const r = await api("POST", "/api/login", { name: $("#login-name").value, password: $("#login-password").value });
    $("#login-button").disabled = false;
    $("#login-password").value = "";
    if (!r.ok) { $("#login-error").textContent = (r.data && r.data.detail) || `HTTP ${r.status}`; return; }
    $("#login-error").textContent = "";
    start();
  });
  $("#logout").addEventListener("click", async () => { await api("POST", "/api/logout"); signedOut(); });
  $("#estop").addEventListener("click", () => command("/api/estop", { reason: `pressed in the console by ${me.name}` }));
  $("#release").addEventListener("click", () => command("/api/release", { reason: `released in the console by ${me.name}` }));
  $("#pause").addEventListener("click", () => command("/api/pause"));
  $("#resume").addEventListener("click", () => command("/api/resume"));
  $("#start-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("#start-button").disabled = true;
    const r = await command("/api/campaigns", { name: $("#start-name").value, budget: $("#start-budget").value,
                                                batch: $("#start-batch").value, seed: $("#start-seed").value });
    $("#start-button").disabled = false;
    if (r.ok) { loadCampaigns(); if (r.data.campaign_id) showCampaign(r.data.campaign_id); }
  });
  $("#account-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    await command("/api/users", { name: $("#account-name").value, role: $("#account-role").value,
                                  password: $("#account-password").value });
    $("#account-password").value = "";
    loadAccounts();
  });
  for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => {
    for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === b);
    for (const p of document.querySelectorAll(".tab-page")) p.hidden = p.id !== `tab-${b.dataset.tab}`;
    if (b.dataset.tab === "audit") loadAudit();
    if (b.dataset.tab === "accounts") loadAccounts();
    if (b.dataset.tab === "campaigns") loadCampaigns();
  });
  start();
});
