// Combinations over time with rollout starts/halts/completions drawn as vertical lines (uPlot draw hook).
(function () {
  "use strict";
  const root = document.getElementById("spread-history");
  if (!root) return;
  const el = document.getElementById("chart-spread-history");
  const summary = document.getElementById("chart-spread-summary");
  const list = document.getElementById("chart-markers");
  const COLORS = { start: "#1f7a3a", halt: "#b3131b", complete: "#1f5fbf", finish: "#1f5fbf" };

  function markerPlugin(markers) {
    return {
      hooks: {
        draw: [(u) => {
          const ctx = u.ctx;
          const { top, height } = u.bbox;
          ctx.save();
          ctx.lineWidth = 2 * devicePixelRatio;
          for (const m of markers) {
            const x = Math.round(u.valToPos(m.t, "x", true));
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
            ctx.strokeStyle = COLORS[m.kind] || "#555";
            ctx.setLineDash(m.kind === "halt" ? [6, 4] : []);
            ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
          }
          ctx.restore();
        }],
      },
    };
  }

  function li(m) {
    const item = document.createElement("li");
    const when = new Date(m.at).toLocaleString();
    item.textContent = `${when} · ${m.kind} · `;
    const a = document.createElement("a");
    a.href = `/rollouts/${m.rollout}/`;
    a.textContent = m.name;
    item.appendChild(a);
    item.dataset.kind = m.kind;
    return item;
  }

  fetch(root.dataset.url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
    .then((d) => {
      list.replaceChildren(...d.markers.map(li));
      if (!d.markers.length) list.replaceChildren(Object.assign(document.createElement("li"), { textContent: "None." }));
      if (!d.t.length) { summary.textContent = "No samples yet: the spread is sampled every minute."; return; }
      // Markers must be inside the x range to show: widen it to include them.
      const xs = d.t.concat(d.markers.map((m) => m.t));
      new uPlot({
        width: Math.max(320, el.clientWidth), height: 280,
        scales: { x: { time: true, range: () => [Math.min(...xs), Math.max(...xs)] } },
        series: [{}, { label: "Combinations", stroke: "#1d2330", width: 2 }],
        axes: [{}, { size: 50 }],
        plugins: [markerPlugin(d.markers)],
      }, [d.t, d.combinations], el);
      const last = d.combinations.length - 1;
      summary.textContent = `Now ${d.combinations[last]} combinations; ${d.combinations[0]} at the start of the window; ` +
        `${d.markers.length} rollout events.`;
    })
    .catch(() => { summary.textContent = "Could not load the chart."; });
})();
