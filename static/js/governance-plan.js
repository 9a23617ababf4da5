// The create-rollout form: predicted live combinations per wave against the combination budget
// (server-rendered fragment from /governance/plan-preview/, debounced).
(function () {
  "use strict";
  const form = document.getElementById("rollout-form");
  const box = document.getElementById("plan-prediction");
  if (!form || !box) return;
  let timer = null;
  let last = "";

  function changed(item) {
    // Mirrors Django's formset has_changed(): an untouched extra wave is not part of the plan.
    return Array.from(item.querySelectorAll("input, select, textarea")).some((el) => {
      if (el.type === "checkbox") return el.checked !== el.defaultChecked;
      if (el.tagName === "SELECT") return Array.from(el.options).some((o) => o.selected !== o.defaultSelected);
      return el.value !== el.defaultValue;
    });
  }

  function query() {
    const params = new URLSearchParams();
    const releases = form.querySelector('[name$="releases"]');
    Array.from(releases ? releases.selectedOptions : []).forEach((o) => params.append("release", o.value));
    form.querySelectorAll("[data-wave-form]").forEach((item, index) => {
      if (index > 0 && !changed(item)) return;
      const get = (name) => (item.querySelector(`[name$="-${name}"]`) || {}).value || "";
      params.append("wave", `${get("cohort")}:${get("size_kind") || "percent"}:${get("size_value") || "0"}`);
    });
    return params;
  }

  async function update() {
    const params = query();
    if (!params.getAll("release").length || params.getAll("wave")[0].startsWith(":")) return;
    const qs = params.toString();
    if (qs === last) return;
    last = qs;
    try {
      const r = await fetch(`${box.dataset.url}?${qs}`, { credentials: "same-origin" });
      if (!r.ok) {
        const d = await r.json().catch(() => ({}));
        box.textContent = d.error ? `Prediction unavailable: ${d.error}` : `Prediction unavailable (HTTP ${r.status}).`;
        return;
      }
      box.innerHTML = await r.text();  // our own server-rendered, auto-escaped fragment
    } catch (e) { box.textContent = "Prediction unavailable: no connection."; }
  }

  form.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(update, 400); });
  form.addEventListener("change", () => { clearTimeout(timer); timer = setTimeout(update, 100); });
  update();
})();
