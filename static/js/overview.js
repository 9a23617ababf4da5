// The fleet overview: numbers, top combinations, long tail and heatmap follow the fleet websocket;
// the two charts read the sampled time series (a new sample arrives every minute or so).
(function () {
  "use strict";
  const root = document.getElementById("overview");
  if (!root) return;
  const { setText, h } = window.fleetLive;
  const fmt = window.fleet.fmt;
  const pct = new Intl.NumberFormat(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const COLORS = ["#1f5fbf", "#b3261e", "#176b3a", "#8a5a00", "#6a3fb5", "#00707a", "#5b6475"];
  const DASHES = [[], [6, 3], [2, 2], [10, 4, 2, 4], [4, 4], [8, 2], [1, 3]];

  function heatLevel(n, max) {
    return !n || !max ? 0 : Math.max(1, Math.min(5, Math.ceil((n * 5) / max)));
  }

  function renderNumbers(s) {
    ["combinations", "devices", "online", "offline", "reporting"].forEach((key) =>
      setText(root.querySelector(`[data-key="${key}"]`), fmt.format(s[key])));
    root.querySelectorAll('[data-estimated="online"]').forEach((e) => { e.hidden = !s.online_estimated; });
    setText(root.querySelector('[data-key="tail-combinations"]'), fmt.format(s.long_tail.combinations));
    setText(root.querySelector('[data-key="tail-devices"]'), fmt.format(s.long_tail.devices));
    setText(root.querySelector('[data-key="tail-share"]'), pct.format(s.long_tail.share));
  }

  function renderTop(s) {
    const body = root.querySelector("#top-combinations tbody");
    const rows = s.top_combinations.map((c) => h("tr", {},
      h("td", {}, c.versions.map(([name, version]) => [h("code", {}, `${name} ${version}`), " "])),
      h("td", { class: "num" }, fmt.format(c.devices)),
      h("td", { class: "share-col" },
        h("span", { class: "bar", "aria-hidden": "true" }, h("span", { style: `width:${c.share}%` })), " ",
        h("span", { class: "num" }, `${pct.format(c.share)}%`))));
    if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: "3", class: "muted" }, "No device has reported its versions yet.")));
    body.replaceChildren(...rows);
  }

  function renderHeatmap(s) {
    const m = s.heatmap;
    const table = root.querySelector("#heatmap");
    setText(root.querySelector('[data-key="heat-app"]'), m.app || "app");
    table.querySelector("thead").replaceChildren(h("tr", {},
      h("th", { scope: "col" }, `${m.os} \\ ${m.app}`), m.cols.map((c) => h("th", { scope: "col" }, c))));
    const rows = m.rows.map((version, i) => h("tr", {}, h("th", { scope: "row" }, version),
      m.cells[i].map((n) => h("td", { class: `heat-${heatLevel(n, m.max)}` }, fmt.format(n)))));
    if (!rows.length) rows.push(h("tr", {}, h("td", { class: "muted" }, "No versions reported yet.")));
    table.querySelector("tbody").replaceChildren(...rows);
  }

  function render(s, changed) {
    renderNumbers(s);
    if (!changed || changed.includes("top_combinations")) renderTop(s);
    if (!changed || changed.includes("heatmap")) renderHeatmap(s);
  }

  window.fleetLive.connect(root.dataset.liveSocket, {
    snapshot: (s) => render(s, null),
    update: (s, changed) => render(s, changed),
  });

  // --- charts -------------------------------------------------------------------------------
  const charts = {};
  const shareSelect = document.getElementById("share-component");
  if (shareSelect) shareSelect.value = root.dataset.os;

  function chart(id, series, data) {
    const el = document.getElementById(id);
    if (!window.uPlot || !el) return;
    if (charts[id] && charts[id].series.length === series.length + 1 &&
        charts[id].series.slice(1).every((s, i) => s.label === series[i].label)) {
      charts[id].setData(data);
      return;
    }
    if (charts[id]) charts[id].destroy();
    charts[id] = new uPlot({
      width: Math.max(300, el.clientWidth), height: 240,
      scales: { x: { time: true } },
      series: [{}, ...series],
      axes: [{}, { size: 60 }],
    }, data, el);
  }

  function summarise(id, text) { const el = document.getElementById(id); if (el) el.textContent = text; }

  async function loadCharts() {
    const component = shareSelect ? shareSelect.value : root.dataset.os;
    try {
      const r = await fetch(`${root.dataset.spreadUrl}?component=${encodeURIComponent(component)}`,
        { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!r.ok) return;
      const d = await r.json();
      if (!d.t.length) {
        summarise("chart-combinations-summary", "No samples yet: the spread is sampled every minute.");
        summarise("chart-share-summary", "No samples yet.");
        return;
      }
      chart("chart-combinations", [{ label: "Combinations", stroke: COLORS[0], width: 2 }], [d.t, d.combinations]);
      const versions = Object.keys(d.share);
      chart("chart-share", versions.map((v, i) => ({
        label: v, stroke: COLORS[i % COLORS.length], dash: DASHES[i % DASHES.length], width: 2,
        value: (u, val) => (val === null ? "–" : `${pct.format(val)}%`),
      })), [d.t, ...versions.map((v) => d.share[v])]);
      const last = d.t.length - 1;
      summarise("chart-combinations-summary",
        `Now ${fmt.format(d.combinations[last])} combinations; ${fmt.format(d.combinations[0])} at the start of the window.`);
      summarise("chart-share-summary", `Latest: ${versions.map((v) => `${v} ${pct.format(d.share[v][last])}%`).join(", ")}.`);
    } catch (e) { /* the next refresh tries again */ }
  }

  loadCharts();
  setInterval(loadCharts, 60000);
  if (shareSelect) shareSelect.addEventListener("change", loadCharts);
  window.addEventListener("resize", () => Object.entries(charts).forEach(([id, c]) => {
    const el = document.getElementById(id);
    if (el) c.setSize({ width: Math.max(300, el.clientWidth), height: 240 });
  }));
})();
