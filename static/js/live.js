// Live pages: one websocket per page, a snapshot on connect, then deltas (top-level keys to replace).
// Reconnects by itself with capped exponential backoff and jitter; every (re)connect starts with a
// fresh snapshot, so nothing missed while away is lost. The header shows the state in words.
(function () {
  "use strict";
  const MAX_DELAY_MS = 30000;
  const CLOSE_TEXT = {
    4401: "Signed out: reload to log in again",
    4403: "No access to live updates",
    4404: "Not found: live updates stopped",
  };

  function indicator() {
    const el = document.getElementById("live-status");
    return {
      set(state, text) {
        if (!el) return;
        el.hidden = false;
        el.dataset.state = state;
        el.textContent = text;
      },
    };
  }

  function connect(path, handlers) {
    const status = indicator();
    let socket = null;
    let attempt = 0;
    let timer = null;
    let stopped = false;
    let state = null;

    function url() {
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      return `${scheme}//${location.host}${path}`;
    }

    function schedule() {
      if (stopped || timer) return;
      const delay = Math.min(MAX_DELAY_MS, 1000 * 2 ** attempt) * (0.5 + Math.random() / 2);
      attempt += 1;
      status.set("reconnecting", `◌ Reconnecting in ${Math.ceil(delay / 1000)} s…`);
      timer = setTimeout(() => { timer = null; open(); }, delay);
    }

    function open() {
      if (stopped) return;
      status.set("connecting", "◌ Connecting…");
      socket = new WebSocket(url());
      socket.addEventListener("message", (event) => {
        let message;
        try { message = JSON.parse(event.data); } catch (e) { return; }
        if (message.type === "snapshot") {
          attempt = 0;
          state = message.data;
          status.set("live", "● Live");
          handlers.snapshot && handlers.snapshot(state);
        } else if (message.type === "delta" && state) {
          Object.assign(state, message.data);
          handlers.update && handlers.update(state, Object.keys(message.data), message.events || []);
        }
      });
      socket.addEventListener("close", (event) => {
        socket = null;
        if (CLOSE_TEXT[event.code]) {
          stopped = true;
          status.set("stopped", `✕ ${CLOSE_TEXT[event.code]}`);
          return;
        }
        schedule();
      });
    }

    // Back on the network, or back to the tab: do not wait for the backoff timer.
    function hurry() {
      if (stopped || socket) return;
      if (timer) { clearTimeout(timer); timer = null; }
      open();
    }
    window.addEventListener("online", hurry);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) hurry(); });
    window.addEventListener("offline", () => status.set("reconnecting", "◌ Offline: waiting for the network…"));

    open();
    return {
      get state() { return state; },
      close() { stopped = true; if (socket) socket.close(); },
    };
  }

  // Helpers for page scripts: replace an element's text and flash it when it changed.
  function setText(el, text) {
    if (!el || el.textContent === text) return;
    el.textContent = text;
    el.classList.remove("flash");
    void el.offsetWidth;
    el.classList.add("flash");
  }

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k === "class") el.className = v; else if (k === "style") el.style.cssText = v; else el.setAttribute(k, v);
    });
    children.flat(Infinity).forEach((c) => { if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c)); });
    return el;
  }

  window.fleetLive = { connect, setText, h };
})();
