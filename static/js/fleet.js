// Small helpers shared by the pages. No build step, no external libraries.
(function () {
  "use strict";
  const fmt = new Intl.NumberFormat();

  // Show timestamps in the viewer's own time zone.
  function localiseTimes(root) {
    root.querySelectorAll("time[datetime]").forEach((el) => {
      const d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d)) { el.title = d.toString(); el.textContent = d.toLocaleString(); }
    });
  }

  // Stats blocks that refresh themselves from a JSON endpoint.
  function liveStats(el) {
    const url = el.dataset.liveJson;
    async function tick() {
      try {
        const r = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (r.ok) {
          const data = await r.json();
          el.querySelectorAll("[data-key]").forEach((v) => {
            const val = data[v.dataset.key];
            if (val !== undefined) { const text = fmt.format(val); if (v.textContent !== text) { v.textContent = text; v.classList.add("flash"); setTimeout(() => v.classList.remove("flash"), 1200); } }
          });
        }
      } catch (e) { /* offline for a moment: try again on the next tick */ }
      setTimeout(tick, 3000);
    }
    setTimeout(tick, 3000);
  }

  // The device table refreshes its rows' live fields.
  function liveRows(table) {
    const url = table.dataset.liveRows;
    async function tick() {
      try {
        const r = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (r.ok) {
          const data = await r.json();
          data.devices.forEach((d) => {
            const row = table.querySelector(`tr[data-uid="${CSS.escape(d.uid)}"]`);
            if (!row) return;
            const seen = row.querySelector('[data-field="last_seen"]');
            if (seen && d.last_seen) {
              const t = new Date(d.last_seen);
              if (seen.dataset.value !== d.last_seen) {
                seen.dataset.value = d.last_seen;
                seen.textContent = "";
                const el = document.createElement("time");
                el.setAttribute("datetime", d.last_seen); el.textContent = t.toLocaleString();
                seen.appendChild(el); seen.classList.add("flash"); setTimeout(() => seen.classList.remove("flash"), 1200);
              }
            }
            const online = row.querySelector('[data-field="online"]');
            if (online) online.innerHTML = d.online ? '<span class="badge ok">● online</span>' : '<span class="badge off">○ offline</span>';
            const inst = row.querySelector('[data-field="installed"]');
            if (inst) {
              const text = Object.entries(d.installed).map(([k, v]) => `${k} ${v}`).join("  ");
              if (inst.dataset.value !== text) {
                inst.dataset.value = text; inst.textContent = "";
                Object.entries(d.installed).forEach(([k, v]) => { const c = document.createElement("code"); c.textContent = `${k} ${v}`; inst.append(c, " "); });
              }
            }
            const count = row.querySelector('[data-field="checkins"]');
            if (count) count.textContent = fmt.format(d.checkins);
          });
        }
      } catch (e) { /* try again on the next tick */ }
      setTimeout(tick, 3000);
    }
    setTimeout(tick, 3000);
  }

  // Forms that take dates read them as days in the viewer's time zone: tell the server which.
  function viewerTimeZone(root) {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    root.querySelectorAll("input[data-viewer-tz]").forEach((input) => { if (!input.value && zone) input.value = zone; });
  }

  document.addEventListener("DOMContentLoaded", () => {
    localiseTimes(document);
    viewerTimeZone(document);
    document.querySelectorAll("[data-live-json]").forEach(liveStats);
    document.querySelectorAll("[data-live-rows]").forEach(liveRows);
  });
  window.fleet = { localiseTimes, fmt };
})();
