// The cluster view: one table, refreshed by every Server-Sent Event. Values
// new since the last event are marked "new", changed ones "changed" (as the
// old replication monitor did). A chart of commits per second per member,
// and a timeline of leader and membership changes. Text only: nothing from
// the cluster is ever parsed as HTML.
"use strict";

const FIELDS = ["id", "address", "role", "voter", "term", "last_log_index", "commit_index", "applied_index", "lag"];
const CHART_SECONDS = 60;
const COLORS = ["#2f6fdd", "#d9534f", "#2e9e5b", "#b8860b", "#8a2be2", "#e67e22", "#16a2b8"];
let previous = new Map();
let leader = null;
let members = null;
const lastContact = new Map();
// Per member: [{t, commit}] samples, the last CHART_SECONDS of them.
const samples = new Map();

function cell(row, value, before) {
  const td = document.createElement("td");
  td.textContent = value === null ? "–" : String(value);
  if (before === undefined) td.className = "new";
  else if (before !== value) td.className = "changed";
  row.appendChild(td);
}

function addToTimeline(text) {
  const item = document.createElement("li");
  item.textContent = `${new Date().toLocaleTimeString()}: ${text}`;
  const timeline = document.getElementById("timeline");
  timeline.prepend(item);
  while (timeline.children.length > 50) timeline.lastChild.remove();
}

function render(view) {
  const now = Date.now();
  const body = document.querySelector("#members tbody");
  const rows = [];
  const current = new Map();
  for (const m of view.members) {
    const row = document.createElement("tr");
    row.dataset.id = String(m.id);
    row.dataset.role = m.role;
    if (m.id === view.leader_id) row.className = "leader";
    if (m.role === "unreachable") row.className = "down";
    else lastContact.set(m.id, now);
    const was = previous.get(m.id);
    for (const f of FIELDS) cell(row, m[f], was ? was[f] : undefined);
    const seen = lastContact.get(m.id);
    const contact = document.createElement("td");
    contact.textContent = seen === undefined ? "never" : `${((now - seen) / 1000).toFixed(1)} s ago`;
    row.appendChild(contact);
    rows.push(row);
    current.set(m.id, m);
    record(m, now);
  }
  body.replaceChildren(...rows);
  previous = current;

  const summary = document.getElementById("summary");
  summary.textContent = view.leader_id == null
    ? "no leader"
    : `leader ${view.leader_id}, term ${view.term}, ${view.members.length} members`;
  summary.dataset.leader = view.leader_id == null ? "" : String(view.leader_id);
  if (view.leader_id != null && view.leader_id !== leader) {
    addToTimeline(`${view.leader_id} leads (term ${view.term})`);
    leader = view.leader_id;
  }
  const ids = view.members.map((m) => m.id).sort((a, b) => a - b).join(",");
  if (members !== null && ids !== members) addToTimeline(`members now ${ids} (were ${members})`);
  members = ids;
  draw();
}

function record(m, now) {
  if (m.role === "unreachable") return;
  const list = samples.get(m.id) || [];
  list.push({ t: now, commit: m.commit_index });
  while (list.length && list[0].t < now - CHART_SECONDS * 1000) list.shift();
  samples.set(m.id, list);
}

// Commits per second over each whole second, from the samples.
function rates(list) {
  const out = [];
  for (let i = 1; i < list.length; i++) {
    const dt = (list[i].t - list[i - 1].t) / 1000;
    if (dt > 0) out.push({ t: list[i].t, r: Math.max(0, (list[i].commit - list[i - 1].commit) / dt) });
  }
  // Smooth over about a second: pushes come five times a second.
  return out.map((p, i) => {
    const window = out.slice(Math.max(0, i - 4), i + 1);
    return { t: p.t, r: window.reduce((s, q) => s + q.r, 0) / window.length };
  });
}

function draw() {
  const canvas = document.getElementById("rate");
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const now = Date.now();
  const series = [...samples.entries()].sort((a, b) => a[0] - b[0]).map(([id, list]) => [id, rates(list)]);
  const top = Math.max(10, ...series.flatMap(([, r]) => r.map((p) => p.r)));
  ctx.strokeStyle = "#ddd";
  ctx.fillStyle = "#666";
  ctx.font = "11px system-ui, sans-serif";
  ctx.beginPath();
  ctx.moveTo(40, 5);
  ctx.lineTo(40, height - 20);
  ctx.lineTo(width - 5, height - 20);
  ctx.stroke();
  ctx.fillText(String(Math.round(top)), 2, 12);
  ctx.fillText("0", 28, height - 20);
  ctx.fillText(`last ${CHART_SECONDS} s`, width - 70, height - 5);
  const x = (t) => 40 + ((t - (now - CHART_SECONDS * 1000)) / (CHART_SECONDS * 1000)) * (width - 45);
  const y = (r) => height - 20 - (r / top) * (height - 30);
  const legend = [];
  series.forEach(([id, points], i) => {
    const color = COLORS[i % COLORS.length];
    ctx.strokeStyle = color;
    ctx.beginPath();
    points.forEach((p, j) => (j ? ctx.lineTo(x(p.t), y(p.r)) : ctx.moveTo(x(p.t), y(p.r))));
    ctx.stroke();
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = `swatch c${i % COLORS.length}`;
    const answering = previous.get(id) && previous.get(id).role !== "unreachable";
    const rate = answering && points.length ? `${Math.round(points[points.length - 1].r)}/s` : "–";
    item.append(swatch, `member ${id}: ${rate}`);
    legend.push(item);
  });
  document.getElementById("rate-legend").replaceChildren(...legend);
}

// On Kubernetes: the ReplicatedChat's conditions and recent Events (newest first).
function rowOf(values) {
  const row = document.createElement("tr");
  for (const v of values) {
    const td = document.createElement("td");
    td.textContent = v;
    row.appendChild(td);
  }
  return row;
}

function renderKubernetes(view) {
  document.getElementById("kubernetes").hidden = false;
  const conditions = view.conditions.map((c) => {
    const row = rowOf([c.type, c.status, c.reason, c.message]);
    row.dataset.type = c.type;
    row.dataset.status = c.status;
    return row;
  });
  document.querySelector("#conditions tbody").replaceChildren(...conditions);
  const events = [...view.events].reverse().map((e) => {
    const row = rowOf([e.time, e.type, e.reason, e.object, e.note]);
    if (e.type === "Warning") row.className = "warning";
    return row;
  });
  document.querySelector("#events tbody").replaceChildren(...events);
  document.getElementById("kube-errors").textContent = (view.errors || []).map((e) => `not shown: ${e}`).join("; ");
}

const clusterEvents = new EventSource("/api/cluster/stream");
clusterEvents.addEventListener("kubernetes", (e) => renderKubernetes(JSON.parse(e.data)));
clusterEvents.addEventListener("cluster", (e) => render(JSON.parse(e.data)));
clusterEvents.addEventListener("unreachable", (e) => {
  document.getElementById("summary").textContent = "cluster unreachable: " + e.data;
});
