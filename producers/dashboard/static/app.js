// Conveyor's deployments page. Every value from the API is untrusted (service names, reasons,
// ECS events): it is only ever set as textContent, never parsed as HTML.
"use strict";

const REFRESH_MS = 2000;
let selected = null; // {kind: "deployments" | "releases", id}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function age(seconds) {
  if (seconds < 90) return Math.round(seconds) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  if (seconds < 129600) return Math.round(seconds / 3600) + " h";
  return Math.round(seconds / 86400) + " d";
}

function stateCell(row, state) {
  cell(row, state, "state " + String(state).replace(/[^a-z_]/g, ""));
}

function select(kind, id) {
  selected = { kind, id };
  showDetail();
}

// Set when the last answer came from the server's memory because Redis cannot be reached.
let reconnecting = null;

async function getJSON(path) {
  const answer = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  const data = await answer.json();
  const stale = answer.headers.get("X-Conveyor-Reconnecting");
  if (stale !== null) reconnecting = Number(stale) || 0;
  if (!answer.ok) throw new Error(data.error || answer.statusText);
  return data;
}

function renderReleases(releases, now) {
  const body = document.querySelector("#releases tbody");
  body.replaceChildren();
  for (const r of releases) {
    const row = document.createElement("tr");
    row.dataset.id = r.id;
    cell(row, r.id, "id");
    cell(row, r.name);
    stateCell(row, r.state);
    const running = !["succeeded", "failed", "cancelled"].includes(r.state);
    let wave = (r.wave + 1) + "/" + r.waves.length;
    const gate = (r.gate_runs || []).find((g) => g.wave === r.wave);
    if (running && r.awaiting_approval_since != null) {
      const awaited = gate && gate.state === "inconclusive"
        ? "after gate " + gate.gate + " was inconclusive"
        : "before wave " + (r.wave + 2);
      // Producers only record an answer; a worker moves the release on when it takes it.
      const answer = (r.approvals || []).find((a) => a.wave === r.wave + 1);
      wave += answer
        ? " · " + (answer.action === "CONTINUE" ? "approved " : "rejected ") + awaited +
          " by " + answer.by + "; a worker acts on it"
        : " · awaiting approval " + awaited;
    } else if (running && r.rolling_back != null) {
      wave += " · rolling back: gate " + (gate ? gate.gate : "") + " " + (gate ? gate.state : "");
    } else if (running && gate && gate.state === "measuring") {
      wave += " · gate " + gate.gate + " measuring (" + gate.measurements.length + " taken)";
    } else if (gate) {
      wave += " · gate " + gate.gate + " " + gate.state;
    } else if (running && r.held) {
      wave += " · held by a freeze";
    }
    cell(row, wave, "wave");
    const total = r.waves.reduce((n, w) => n + w.length, 0);
    const done = Object.keys(r.outcomes).length;
    const bar = document.createElement("progress");
    bar.max = total;
    bar.value = done;
    const td = cell(row, "");
    td.appendChild(bar);
    td.appendChild(document.createTextNode(" " + done + "/" + total));
    const counts = {};
    for (const state of Object.values(r.outcomes)) counts[state] = (counts[state] || 0) + 1;
    cell(row, Object.entries(counts).map(([s, n]) => n + " " + s).join(", "));
    cell(row, age(now - r.created_at));
    row.addEventListener("click", () => select("releases", r.id));
    body.appendChild(row);
  }
}

// Where a blue/green, linear or canary deployment is in ECS's lifecycle, as `conveyor status`
// says it: the approval a PAUSE hook waits for, or the stage, the traffic split and the bake left.
function stageText(p, now) {
  if (!p.lifecycle_stage) return "";
  if (p.awaiting_hook_id) {
    let text = "awaiting approval at " + p.lifecycle_stage;
    if (p.hook_expires_at != null) {
      text += " (ECS will " + (p.hook_timeout_action || "ROLLBACK") + " in " +
        age(Math.max(0, p.hook_expires_at - now)) + ")";
    }
    return text;
  }
  let text = (p.strategy || "deployment") + " at " + p.lifecycle_stage;
  if (p.production_traffic != null) {
    text += ", production traffic " + p.production_traffic + "% new";
  }
  if (p.bake_ends_at != null) text += ", bake left " + age(Math.max(0, p.bake_ends_at - now));
  return text;
}

function renderDeployments(deployments, now) {
  const body = document.querySelector("#deployments tbody");
  body.replaceChildren();
  for (const d of deployments) {
    const row = document.createElement("tr");
    row.dataset.id = d.id;
    const terminal = !["queued", "running"].includes(d.state);
    cell(row, d.id, "id");
    cell(row, d.cluster + "/" + d.service);
    stateCell(row, d.state);
    cell(row, terminal ? "" : d.step);
    const p = d.progress || {};
    cell(row, terminal ? "" : stageText(p, now), "stage");
    cell(row, p.desired ? p.running + "/" + p.desired : "");
    const events = d.events || [];
    const latest = p.latest_event || (events.length ? events[events.length - 1].message : "");
    cell(row, terminal && d.reason ? d.reason : latest);
    cell(row, age((d.finished_at || now) - d.created_at));
    row.addEventListener("click", () => select("deployments", d.id));
    body.appendChild(row);
  }
}

async function showDetail() {
  if (!selected) return;
  const section = document.getElementById("detail");
  try {
    const data = await getJSON("/api/" + selected.kind + "/" + encodeURIComponent(selected.id));
    document.getElementById("detail-title").textContent =
      (selected.kind === "releases" ? "release " : "deployment ") + selected.id;
    document.getElementById("detail-body").textContent = JSON.stringify(data, null, 2);
    section.hidden = false;
  } catch (error) {
    document.getElementById("detail-body").textContent = String(error.message || error);
  }
}

async function refresh() {
  const params = new URLSearchParams({ limit: "100" });
  const service = document.getElementById("service").value.trim();
  const state = document.getElementById("state").value;
  if (service) params.append("service", service);
  if (state) params.append("state", state);
  const status = document.getElementById("status");
  reconnecting = null;
  try {
    const data = await getJSON("/api/list?" + params);
    const now = Date.now() / 1000;
    renderReleases(data.releases, now);
    renderDeployments(data.deployments, now);
    await showDetail();
    status.textContent = reconnecting === null
      ? "updated " + new Date().toLocaleTimeString()
      : "reconnecting to Redis; showing data from " + age(reconnecting) + " ago";
  } catch (error) {
    // Whatever the page shows stays: the last data is better than an empty page.
    status.textContent = reconnecting !== null
      ? "reconnecting to Redis…"
      : "cannot refresh: " + String(error.message || error);
  }
}

document.getElementById("filters").addEventListener("submit", (event) => event.preventDefault());
document.getElementById("service").addEventListener("input", refresh);
document.getElementById("state").addEventListener("change", refresh);
refresh();
setInterval(refresh, REFRESH_MS);
