// The create-rollout form: each wave shows how many devices it would reach (debounced fetch).
(function () {
  "use strict";
  const form = document.getElementById("rollout-form");
  if (!form) return;
  const fmt = window.fleet.fmt;
  const url = form.dataset.previewUrl;

  function field(fieldset, name) { return fieldset.querySelector(`[name$="-${name}"]`); }

  function watch(item) {
    const out = item.querySelector("[data-wave-preview]");
    let timer = null;
    async function update() {
      const cohort = field(item, "cohort").value;
      if (!cohort) { out.textContent = "“The rest”: the devices of earlier waves' cohorts not chosen yet."; return; }
      const params = new URLSearchParams({ cohort, size_kind: field(item, "size_kind").value, size_value: field(item, "size_value").value || "0" });
      try {
        const r = await fetch(`${url}?${params}`, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        const d = await r.json();
        if (!r.ok) { out.textContent = d.error || `Preview unavailable (HTTP ${r.status}).`; return; }
        out.replaceChildren("Reaches ", Object.assign(document.createElement("strong"), { textContent: fmt.format(d.would_select) }),
          ` of ${fmt.format(d.cohort_devices)} devices in the cohort (${fmt.format(d.segments)} hardware/region/version segments).`);
        out.dataset.devices = d.would_select;
      } catch (e) { out.textContent = "Preview unavailable: no connection."; }
    }
    item.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(update, 300); });
    item.addEventListener("change", () => { clearTimeout(timer); timer = setTimeout(update, 50); });
    if (field(item, "cohort").value) update();
  }

  form.querySelectorAll("[data-wave-form]").forEach(watch);
})();
