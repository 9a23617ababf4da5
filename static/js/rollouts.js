// The rollouts list follows /ws/rollouts/: states and progress bars move by themselves.
(function () {
  "use strict";
  const root = document.getElementById("rollouts");
  if (!root) return;
  const { h } = window.fleetLive;
  const fmt = window.fleet.fmt;

  function time(iso) { const d = new Date(iso); return h("time", { datetime: iso, title: d.toString() }, d.toLocaleString()); }

  function render(s) {
    const banner = document.getElementById("freeze-banner");
    banner.replaceChildren(...(s.freeze ? [h("div", { class: "error-box", role: "alert" }, h("strong", {}, "❄ Fleet frozen:"),
      ` ${s.freeze.reason}${s.freeze.by ? ` — ${s.freeze.by}` : ""}`)] : []));
    const rows = s.rollouts.map((r) => h("tr", { "data-rollout": r.id },
      h("td", {}, h("a", { href: `/rollouts/${r.id}/` }, r.name),
        r.halt_reason ? [h("br"), h("span", { class: "error small" }, `⚠ ${r.halt_reason}`)] : null),
      h("td", {}, h("span", { class: `badge state-${r.state}` }, `${r.state_label}${r.frozen ? " · frozen" : ""}`)),
      h("td", { class: "share-col" },
        h("span", { class: "bar", "aria-hidden": "true" }, h("span", { style: `width:${r.progress.percent}%` })), " ",
        h("span", { class: "num" }, `${fmt.format(r.progress.succeeded)}/${fmt.format(r.progress.total)}`),
        r.progress.failed ? [" ", h("span", { class: "error small" }, `${fmt.format(r.progress.failed)} failed`)] : null),
      h("td", {}, r.started_at ? time(r.started_at) : "—")));
    root.querySelector("#rollout-table tbody").replaceChildren(
      ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: "4", class: "muted" }, "No rollouts yet."))]));
  }

  window.fleetLive.connect(root.dataset.liveSocket, { snapshot: render, update: render });
})();
