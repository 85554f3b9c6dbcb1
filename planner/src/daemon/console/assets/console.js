// Lifeline console: follows /api/v1/events and refreshes what the page shows
// from the JSON API. The pages are complete without it.
"use strict";
(function () {
  const live = document.getElementById("live");
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const secs = (s) => {
    if (s === null || s === undefined || !isFinite(s)) return "—";
    s = Math.max(0, s);
    if (s < 10) return s.toFixed(1) + " s";
    const t = Math.round(s);
    if (t < 60) return t + " s";
    if (t < 3600) return Math.floor(t / 60) + " min " + (t % 60) + " s";
    if (t < 86400) return Math.floor(t / 3600) + " h " + Math.floor((t % 3600) / 60) + " min";
    return Math.floor(t / 86400) + " d " + Math.floor((t % 86400) / 3600) + " h";
  };
  const time = (t) => t ? '<time datetime="' + esc(t) + '">' + esc(t.replace("T", " ").replace(/(\.\d+)?(Z|\+00:00)$/, " UTC")) + "</time>" : "—";

  function updateRow(row, g) {
    const cell = (f) => row.querySelector('[data-field="' + f + '"]');
    const state = cell("state");
    if (state) {
      state.dataset.state = g.state;
      state.innerHTML = '<span class="state ' + esc(g.state) + '">' + esc(g.state_text) + "</span>";
    }
    const rpo = cell("rpo");
    if (rpo) {
      const spark = rpo.querySelector("svg");
      rpo.innerHTML = secs(g.rpo_seconds) + " <small>/ " + (g.rpo_objective_seconds === null ? "no objective" : secs(g.rpo_objective_seconds)) + "</small><br>";
      if (spark) rpo.appendChild(spark);
    }
    const point = cell("point");
    if (point) {
      const p = g.last_point;
      point.innerHTML = (p ? "#" + p.seq + " " + time(p.taken_at) + " <small>" + esc(p.consistency) + "</small>" : "no point yet") +
        "<br><small>window " + time(g.retention.oldest) + " → " + time(g.retention.newest) + "</small>";
    }
    const jobs = cell("jobs");
    if (jobs) {
      jobs.innerHTML = g.running_jobs.length ? g.running_jobs.map((j) => esc(j.job) + " <small>since " + time(j.started_at) + "</small>").join("<br>") : "—";
    }
  }

  let pending = false;
  async function refresh() {
    if (pending) return;
    pending = true;
    try {
      const table = document.getElementById("groups");
      if (table) {
        const r = await fetch("/api/v1/groups", { credentials: "same-origin" });
        if (r.ok) {
          for (const g of await r.json()) {
            const row = table.querySelector('tr[data-group="' + CSS.escape(g.name) + '"]');
            if (row) updateRow(row, g);
          }
        }
      }
      const jobs = document.getElementById("jobs");
      if (jobs) {
        const r = await fetch("/api/v1/jobs", { credentials: "same-origin" });
        if (r.ok) {
          const j = await r.json();
          const body = jobs.querySelector("tbody");
          body.innerHTML = j.running.concat(j.recent).map((x) => {
            const result = x.result === null ? "running" : x.result === "ok" ? "ok" : "failed";
            const cls = x.result === null ? "running" : x.result;
            return '<tr data-job="' + x.id + '"><td>' + esc(x.job) + "</td><td>" + esc(x.group) + "</td><td>" + time(x.started_at) +
              "</td><td>" + secs(x.duration_seconds) + '</td><td class="result ' + cls + '">' + result + "</td><td>" + esc(x.error || x.summary || "") + "</td></tr>";
          }).join("");
        }
      }
    } finally {
      pending = false;
    }
  }

  function onEvent(e) {
    let what = e.type;
    try {
      const d = JSON.parse(e.data);
      if (d.job) what = d.job + (d.group ? " " + d.group : "") + (e.type === "job_started" ? " started" : e.type === "job_finished" ? " " + (d.result === "ok" ? "finished" : "failed") : "");
      else if (d.group) what = d.group + ": " + d.what;
    } catch (_) { /* keep the type */ }
    live.dataset.events = String(Number(live.dataset.events || "0") + 1);
    live.textContent = "live · " + what;
    refresh();
  }

  // Only the pages that show live state follow the stream.
  if (window.EventSource && live && (document.getElementById("groups") || document.getElementById("jobs"))) {
    const es = new EventSource("/api/v1/events");
    es.addEventListener("hello", () => { live.classList.add("on"); live.textContent = "live"; });
    for (const t of ["job_started", "job_finished", "group_changed", "resync"]) es.addEventListener(t, onEvent);
    es.onerror = () => { live.classList.remove("on"); live.textContent = "reconnecting…"; };
  }

  for (const b of document.querySelectorAll("button[data-action]")) {
    b.addEventListener("click", async () => {
      const out = b.parentElement.querySelector(".action-result") || b.parentElement;
      const r = await fetch(b.dataset.action, { method: "POST", credentials: "same-origin", headers: { "x-lifeline-csrf": "1" } });
      let msg = r.status + "";
      try { const j = await r.json(); msg = j.error || j.action; } catch (_) { /* status only */ }
      if (out !== b.parentElement) out.textContent = msg; else b.title = msg;
      if (r.ok && b.dataset.action.match(/(pause|resume)$/)) location.reload();
      // An approval is given once: the planner refuses a second one.
      if (r.ok && b.dataset.action.includes("/approve")) b.disabled = true;
    });
  }
})();
