// The cohort editor's live preview: while the admin types, ask the server (debounced) how many
// devices the filter selects and show a sample, or the parse error with a caret at its position.
(function () {
  "use strict";
  const box = document.getElementById("cohort-preview");
  const input = document.getElementById("id_filter_text");
  if (!box || !input) return;
  const fmt = window.fleet.fmt;
  const DEBOUNCE_MS = 300;
  let timer = null;
  let inflight = null;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function caretFor(text, position) {
    const start = text.lastIndexOf("\n", position - 1) + 1;
    const endAt = text.indexOf("\n", position);
    const line = text.slice(start, endAt === -1 ? text.length : endAt);
    const lineNumber = text.slice(0, position).split("\n").length;
    return { line, lineNumber, column: position - start };
  }

  function show(state, nodes) {
    box.dataset.state = state;
    box.replaceChildren(...nodes);
    input.setAttribute("aria-invalid", state === "error" ? "true" : "false");
  }

  function render(text, data) {
    if (data.ok) {
      const count = el("p", { "data-preview": "count" });
      count.append("Matches ", el("strong", {}, (data.estimated ? "≈ " : "") + fmt.format(data.count)),
        ` device${data.count === 1 ? "" : "s"}`);
      if (data.estimated) {
        count.append(el("span", { class: "muted", "data-preview": "estimate" },
          ` (estimated from a sample of ${fmt.format(data.sampled)} devices; the list shows matches in that sample)`));
      }
      const list = el("ul", { class: "sample", "aria-label": "Sample of matching devices" });
      data.sample.forEach((uid) => { const li = el("li"); li.append(el("code", {}, uid)); list.append(li); });
      show("ok", data.sample.length ? [count, list] : [count]);
      return;
    }
    const where = caretFor(text, Math.min(data.position ?? 0, text.length));
    const message = el("p", { class: "error", "data-preview": "error" }, `${data.error} `);
    message.append(el("span", { class: "muted" }, `(line ${where.lineNumber}, column ${where.column + 1})`));
    const pre = el("pre", { class: "caret", "aria-hidden": "true" }, `${where.line}\n${" ".repeat(where.column)}`);
    pre.append(el("span", { class: "mark" }, "^"));
    show("error", [message, pre]);
  }

  async function preview() {
    const text = input.value;
    if (!text.trim()) { show("idle", [el("span", { class: "muted" }, "Type a filter to see how many devices it selects.")]); return; }
    if (inflight) inflight.abort();
    inflight = new AbortController();
    box.setAttribute("aria-busy", "true");
    try {
      const r = await fetch(`${box.dataset.url}?filter=${encodeURIComponent(text)}`,
        { headers: { Accept: "application/json" }, credentials: "same-origin", signal: inflight.signal });
      if (!r.ok) { show("error", [el("p", { class: "error" }, `Preview unavailable (HTTP ${r.status}).`)]); return; }
      // Only the answer to the latest text counts: typing on makes older answers stale.
      if (text === input.value) render(text, await r.json());
    } catch (e) {
      if (e.name !== "AbortError") show("error", [el("p", { class: "error" }, "Preview unavailable: no connection.")]);
    } finally {
      box.removeAttribute("aria-busy");
    }
  }

  input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(preview, DEBOUNCE_MS); });
  if (input.value.trim()) preview();
})();
