// The cluster view: one table, refreshed by every Server-Sent Event. Values
// new since the last event are marked "new", changed ones "changed" (as the
// old replication monitor did). Text only: nothing from the cluster is ever
// parsed as HTML.
"use strict";

const FIELDS = ["id", "address", "role", "voter", "term", "last_log_index", "commit_index", "applied_index", "lag"];
let previous = new Map();
let leader = null;

function cell(row, value, before) {
  const td = document.createElement("td");
  td.textContent = String(value);
  if (before === undefined) td.className = "new";
  else if (before !== value) td.className = "changed";
  row.appendChild(td);
}

function render(view) {
  const body = document.querySelector("#members tbody");
  const rows = [];
  const now = new Map();
  for (const m of view.members) {
    const row = document.createElement("tr");
    row.dataset.id = String(m.id);
    if (m.id === view.leader_id) row.className = "leader";
    if (m.role === "unreachable") row.className = "down";
    const was = previous.get(m.id);
    for (const f of FIELDS) cell(row, m[f], was ? was[f] : undefined);
    rows.push(row);
    now.set(m.id, m);
  }
  body.replaceChildren(...rows);
  previous = now;
  const summary = document.getElementById("summary");
  summary.textContent = view.leader_id == null
    ? "no leader"
    : `leader ${view.leader_id}, term ${view.term}, ${view.members.length} members`;
  summary.dataset.leader = view.leader_id == null ? "" : String(view.leader_id);
  if (view.leader_id != null && view.leader_id !== leader) {
    const item = document.createElement("li");
    item.textContent = `${new Date().toLocaleTimeString()}: ${view.leader_id} leads (term ${view.term})`;
    document.getElementById("timeline").prepend(item);
    leader = view.leader_id;
  }
}

const events = new EventSource("/api/cluster/stream");
events.addEventListener("cluster", (e) => render(JSON.parse(e.data)));
events.addEventListener("unreachable", (e) => {
  document.getElementById("summary").textContent = "cluster unreachable: " + e.data;
});
