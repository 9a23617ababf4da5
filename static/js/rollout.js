// One rollout: state, halt banner, per-wave progress and the projection follow /ws/rollouts/<id>/;
// the health chart re-reads its series when progress changes (at most every 15 s).
(function () {
  "use strict";
  const root = document.getElementById("rollout");
  if (!root) return;
  const { setText, h } = window.fleetLive;
  const fmt = window.fleet.fmt;
  const controlsData = document.getElementById("rollout-controls");
  const controlsByState = controlsData ? JSON.parse(controlsData.textContent) : {};

  function time(iso) { const d = new Date(iso); return h("time", { datetime: iso, title: d.toString() }, d.toLocaleString()); }

  function renderHead(s) {
    const r = s.rollout;
    const badge = document.getElementById("rollout-state");
    badge.className = `badge state-${r.state}`;
    setText(badge, `${r.state_label}${r.frozen ? " · frozen" : ""}`);
    setText(document.getElementById("rollout-done"), fmt.format(s.done));
    setText(document.getElementById("rollout-devices"), fmt.format(s.devices));
    document.getElementById("rollout-eta").replaceChildren(s.projected_completion ? time(s.projected_completion) : "—");
    const banner = document.getElementById("halt-banner");
    if (r.state !== "halted") { banner.replaceChildren(); return; }
    banner.replaceChildren(h("div", { class: "halt-banner", role: "alert" },
      h("p", { class: "title" }, "⚠ Halted", r.halted_at ? [" at ", time(r.halted_at)] : null),
      h("p", {}, r.halt_reason),
      r.detection_delay_s !== null && r.detection_delay_s !== undefined
        ? h("p", { class: "small" }, "First failing report to halt: ", h("strong", {}, `${Math.round(r.detection_delay_s)} s`)) : null));
  }

  function renderWaves(s) {
    const items = s.waves.map((w) => h("li", { class: "wave", "data-wave": w.index },
      h("div", { class: "wave-head" }, h("strong", {}, w.name), " ",
        h("span", { class: `badge state-${w.state}` }, w.state), " ",
        h("span", { class: "muted small" }, `${w.cohort ? `cohort ${w.cohort}` : "the rest"} · ${w.counts.total} of ${w.planned} planned`)),
      h("div", { class: "stack", "aria-hidden": "true" }, w.bars.filter(([, n]) => n).map(([key, n]) =>
        h("span", { class: `seg seg-${key}`, style: `flex-grow:${n}`, title: `${key} ${n}` }))),
      h("p", { class: "small counts" }, w.bars.map(([key, n]) => [h("span", { class: `count count-${key}` },
        h("span", { class: `key seg-${key}`, "aria-hidden": "true" }), `${key} `, h("strong", {}, fmt.format(n))), " "])),
      w.segment_coverage && w.segment_coverage.segments_total
        ? h("p", { class: "small muted" }, `Segments covered: ${w.segment_coverage.segments_covered} of ${w.segment_coverage.segments_total}`) : null));
    document.getElementById("waves").replaceChildren(...items);
  }

  // --- health chart ---
  let chart = null;
  let lastChart = 0;
  async function loadHealth() {
    lastChart = Date.now();
    try {
      const r = await fetch(root.dataset.healthUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!r.ok) return;
      const d = await r.json();
      const summary = document.getElementById("chart-health-summary");
      if (!d.points.length) { summary.textContent = "No health reports from updated devices yet."; return; }
      const t = d.points.map((p) => Math.floor(new Date(p.at).getTime() / 1000));
      const updated = d.points.map((p) => p.updated_rate);
      const baseline = d.points.map((p) => p.baseline_rate);
      const series = [[t, updated, baseline]];
      const opts = [{ label: "Updated", stroke: "#b3261e", width: 2 }, { label: "Baseline", stroke: "#1f5fbf", width: 2, dash: [6, 3] }];
      if (d.min_ratio) {
        series[0].push(baseline.map((b) => (b === null ? null : b * d.min_ratio)));
        opts.push({ label: `Threshold (${d.min_ratio}× baseline)`, stroke: "#8a5a00", width: 1, dash: [2, 3] });
      }
      const el = document.getElementById("chart-health");
      if (chart) chart.setData(series[0]);
      else if (window.uPlot) chart = new uPlot({ width: Math.max(300, el.clientWidth), height: 240, scales: { x: { time: true } },
        series: [{}, ...opts], axes: [{}, { size: 60 }] }, series[0], el);
      const last = d.points[d.points.length - 1];
      summary.textContent = `Latest: updated ${last.updated_rate ?? "–"}, baseline ${last.baseline_rate ?? "–"} per 100 device-hours.`;
    } catch (e) { /* the next progress change tries again */ }
  }

  // Which controls apply follows the state; the user's role decided which exist (server-side).
  function renderControls(r) {
    const allowed = controlsByState[`${r.state}:${r.frozen ? 1 : 0}`] || [];
    document.querySelectorAll("details.control").forEach((d) => {
      const show = allowed.includes(d.dataset.action);
      if (!show) d.open = false;
      d.hidden = !show;
    });
    const none = document.querySelector("[data-no-controls]");
    if (none) none.hidden = allowed.length > 0;
  }

  function render(s, changed) {
    renderHead(s);
    if (!changed || changed.includes("waves")) renderWaves(s);
    if (!changed || Date.now() - lastChart > 15000) loadHealth();
    renderControls(s.rollout);
  }

  window.fleetLive.connect(root.dataset.liveSocket, { snapshot: (s) => render(s, null), update: render });
})();
