// The on-call wall screen: everything follows /ws/wall/; alerts list the notable events as they come.
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

  function describe(e) {
    if (e.kind === "rollout.state") return `Rollout ${e.name || `#${e.rollout}`}: ${e.previous ? `${e.previous} → ` : ""}${e.state}${e.actor ? ` (${e.actor})` : ""}${e.reason ? `: ${e.reason}` : ""}`;
    if (e.kind === "rollout.halted") return `⚠ Rollout ${e.name || `#${e.rollout}`} halted: ${e.reason}`;
    if (e.kind === "fleet.freeze") return `${e.active ? "❄ Fleet frozen" : "Freeze lifted"} by ${e.actor}: ${e.reason}`;
    return e.kind;
  }

  function addAlerts(events) {
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
  }

  window.fleetLive.connect(root.dataset.liveSocket, {
    snapshot: (s) => render(s, null),
    update: (s, changed, events) => { render(s, changed); addAlerts(events); },
  });

  const clock = document.getElementById("wall-clock");
  function tick() { clock.textContent = new Date().toLocaleTimeString(); }
  tick();
  setInterval(tick, 1000);
})();
