// The study dashboard's only script: fetch the panels again every few seconds and swap them
// in, without reloading the page. The page works without it (every panel is rendered on the
// server); there is no inline script anywhere (the server's CSP: script-src 'self').
"use strict";

(function () {
  const panels = document.getElementById("panels");
  if (!panels) {
    return;
  }
  const source = panels.dataset.source;
  const every = Math.max(5, Number(panels.dataset.every) || 15) * 1000;
  const status = document.getElementById("refresh-status");
  const button = document.getElementById("refresh-now");
  let timer = null;
  let busy = false;

  function say(text) {
    status.textContent = text;
  }

  function stop() {
    clearInterval(timer);
    timer = null;
    button.hidden = true;
  }

  async function refresh() {
    if (busy) {
      return;
    }
    busy = true;
    try {
      const response = await fetch(source, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "text/html" },
      });
      if (response.status === 401) {
        say("Signed out: sign in again to keep this page current.");
        stop();
        return;
      }
      if (!response.ok) {
        say("Not refreshed (HTTP " + response.status + "); trying again.");
        return;
      }
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      panels.replaceChildren(...fresh.body.childNodes);
      say("Refreshed at " + new Date().toLocaleTimeString() + "; again every " + every / 1000 + " s.");
    } catch (error) {
      say("Not refreshed (no answer from the server); trying again.");
    } finally {
      busy = false;
    }
  }

  button.hidden = false;
  button.addEventListener("click", refresh);
  timer = setInterval(function () {
    if (!document.hidden) {
      refresh();
    }
  }, every);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && timer !== null) {
      refresh();
    }
  });
})();
