// The on-call wall screen: everything follows /ws/wall/; alerts can be acknowledged from here, and the
// activity list shows the notable events as they come.
(function () {
  "use strict";
  const root = document.getElementById("wall");
  if (!root) return;
  const { setText, h } = window.fleetLive;
  const fmt = window.fleet.fmt;
  const pct = new Intl.NumberFormat(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const MAX_ALERTS = 12;

  function time(iso) {
    const d = new Date(iso);
    return h("time", { datetime: iso, title: d.toString() }, d.toLocaleString());
  }

  function renderFleet(s) {
    ["devices", "online", "offline", "combinations"].forEach((k) =>
      setText(root.querySelector(`[data-key="${k}"]`), fmt.format(s.fleet[k])));
    root.querySelectorAll('[data-estimated="online"]').forEach((e) => { e.hidden = !s.fleet.online_estimated; });
  }

  function renderFreeze(s) {
    const control = document.getElementById("freeze-control");
    if (control) { control.hidden = Boolean(s.freeze); if (s.freeze) control.open = false; }
    const box = document.getElementById("wall-freeze");
    box.replaceChildren(...(s.freeze ? [h("div", { class: "freeze-banner", role: "alert" },
      `❄ All rollouts frozen: ${s.freeze.reason}${s.freeze.by ? ` — ${s.freeze.by}` : ""}`)] : []));
  }

  function renderRollouts(s) {
    const list = document.getElementById("wall-rollouts");
    const items = s.rollouts.map((r) => h("li", { class: "wall-rollout", "data-rollout": r.id },
      h("span", { class: "name" }, r.name),
      h("span", { class: `wall-state ${r.state}` }, r.state_label),
      h("span", { class: "wall-progress", "aria-hidden": "true" }, h("span", { style: `width:${r.progress.percent}%` })),
      h("span", { class: "muted" }, `${fmt.format(r.progress.succeeded)} of ${fmt.format(r.progress.total)} updated ` +
        `(${pct.format(r.progress.percent)}%)${r.progress.failed ? `, ${fmt.format(r.progress.failed)} failed` : ""}`)));
    list.replaceChildren(...(items.length ? items : [h("li", { class: "muted" }, "No rollout is running.")]));
  }

  function renderHalts(s) {
    const box = document.getElementById("wall-halts");
    const items = s.halts.map((r) => h("div", { class: "halt", "data-rollout": r.id },
      h("div", { class: "title" }, `⚠ HALTED: ${r.name}`),
      h("div", {}, r.halt_reason),
      h("div", { class: "muted small" }, "halted ", time(r.halted_at),
        r.detection_delay_s !== null && r.detection_delay_s !== undefined
          ? ` · ${Math.round(r.detection_delay_s)} s after the first failing report` : "",
        ` · now ${r.state_label.toLowerCase()}`)));
    box.replaceChildren(...(items.length ? items : [h("p", { class: "muted" }, "✓ No halts.")]));
  }

  const since = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  const SPANS = [["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];

  function ago(iso) {
    const s = Math.round((new Date(iso) - Date.now()) / 1000);
    const [unit, size] = SPANS.find(([, size]) => Math.abs(s) >= size) || SPANS[3];
    return since.format(Math.round(s / size), unit);
  }

  function duration(s) {
    s = Math.round(s);
    return s < 120 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
  }

  const alertsPanel = document.getElementById("alerts-panel");

  function alertItem(a) {
    const titleId = `alert-${a.id}-title`;
    return h("li", { class: `alert-item sev-${a.severity} ${a.open ? "open" : "acked"}`, "data-alert": a.id },
      h("div", { class: "alert-title", id: titleId },
        h("span", { class: "alert-badge" }, `${a.open ? "OPEN" : "✓ ACKED"} · ${a.severity.toUpperCase()}`), " ", a.title),
      a.detail ? h("div", { class: "alert-detail" }, a.detail) : null,
      h("div", { class: "muted small" }, "raised ",
        h("time", { datetime: a.created_at, title: new Date(a.created_at).toLocaleString(), "data-since": "" }, ago(a.created_at)),
        a.detection_delay_s !== null && a.detection_delay_s !== undefined
          ? ` · ${duration(a.detection_delay_s)} from the first failing report to the halt` : ""),
      a.open
        ? h("form", { method: "post", action: `/alerts/${a.id}/ack/`, class: "alert-ack" },
          h("input", { type: "hidden", name: "csrfmiddlewaretoken", value: alertsPanel.dataset.csrf }),
          h("button", { type: "submit", "aria-describedby": titleId }, "Acknowledge"))
        : h("div", { class: "alert-acked" }, `acknowledged by ${a.acknowledged_by} at `, time(a.acknowledged_at),
          a.ack_note ? `: ${a.ack_note}` : ""));
  }

  // Keyed by alert and its content: unchanged items keep their element (and keyboard focus),
  // new or changed ones flash.
  function renderAlerts(s) {
    const list = document.getElementById("wall-alert-list");
    const old = new Map([...list.querySelectorAll("li[data-alert]")].map((li) => [li.dataset.sig, li]));
    const items = (s.alerts || []).map((a) => {
      const sig = JSON.stringify(a);
      const kept = old.get(sig);
      if (kept) return kept;
      const li = alertItem(a);
      li.dataset.sig = sig;
      if (list.dataset.rendered) li.classList.add("flash");
      return li;
    });
    list.dataset.rendered = "1";
    list.replaceChildren(...(items.length ? items : [h("li", { class: "muted" }, "✓ No alerts.")]));
    const open = (s.alerts || []).filter((a) => a.open).length;
    document.getElementById("alerts-open").textContent = open ? `(${fmt.format(open)} open)` : "";
  }

  // Acknowledge without leaving the page; every wall (this one too) then follows the websocket.
  // Anything unexpected (signed out, no JSON) falls back to the plain form post.
  document.getElementById("wall-alert-list").addEventListener("submit", async (event) => {
    const form = event.target.closest("form.alert-ack");
    if (!form) return;
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    button.textContent = "Acknowledging…";
    try {
      const response = await fetch(form.action, {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (!response.ok || !(response.headers.get("Content-Type") || "").includes("application/json")) {
        throw new Error(`HTTP ${response.status}`);
      }
      const { alert } = await response.json();
      const li = form.closest("li");
      const fresh = alertItem(alert);
      fresh.dataset.sig = JSON.stringify(alert);
      li.replaceWith(fresh);
    } catch (e) {
      form.submit();
    }
  });

  function describe(e) {
    if (e.kind === "alert.acknowledged") return `✓ ${e.alert.acknowledged_by} acknowledged: ${e.alert.title}`;
    if (e.kind === "rollout.state") return `Rollout ${e.name || `#${e.rollout}`}: ${e.previous ? `${e.previous} → ` : ""}${e.state}${e.actor ? ` (${e.actor})` : ""}${e.reason ? `: ${e.reason}` : ""}`;
    if (e.kind === "rollout.halted") return `⚠ Rollout ${e.name || `#${e.rollout}`} halted: ${e.reason}`;
    if (e.kind === "fleet.freeze") return `${e.active ? "❄ Fleet frozen" : "Freeze lifted"} by ${e.actor}: ${e.reason}`;
    return e.kind;
  }

  function addAlerts(events) {
    // A new alert is already in the Alerts panel; listing it again here is noise on a wall.
    events = events.filter((e) => e.kind !== "alert.raised");
    if (!events.length) return;
    const list = document.getElementById("wall-alerts");
    list.querySelectorAll("li.muted").forEach((li) => li.remove());
    events.forEach((e) => {
      const now = new Date();
      list.prepend(h("li", { class: "flash" }, h("span", { class: "muted small" }, now.toLocaleTimeString(), " "), describe(e)));
    });
    while (list.children.length > MAX_ALERTS) list.lastChild.remove();
  }

  function render(s, changed) {
    if (!changed || changed.includes("fleet")) renderFleet(s);
    if (!changed || changed.includes("freeze")) renderFreeze(s);
    if (!changed || changed.includes("rollouts")) renderRollouts(s);
    if (!changed || changed.includes("halts")) renderHalts(s);
    if (!changed || changed.includes("alerts")) renderAlerts(s);
  }

  window.fleetLive.connect(root.dataset.liveSocket, {
    snapshot: (s) => render(s, null),
    update: (s, changed, events) => { render(s, changed); addAlerts(events); },
  });

  const clock = document.getElementById("wall-clock");
  function tick() {
    clock.textContent = new Date().toLocaleTimeString();
    root.querySelectorAll("time[data-since]").forEach((t) => { t.textContent = ago(t.getAttribute("datetime")); });
  }
  tick();
  setInterval(tick, 1000);
})();
