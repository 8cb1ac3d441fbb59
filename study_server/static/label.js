// The labeling page: accept, show the images one at a time, collect labels, submit.
// Its data comes from the JSON block #config (no inline script: the CSP forbids it).
// Only after the server has stored the labels does the page post to MTurk's externalSubmit,
// so MTurk never hears of a submission the study does not have. A source whose ids are more
// than a worker id (Prolific: participant, study, session) passes them as config.identity,
// sent with every request; Prolific's participants then get the completion URL from the
// server (config.completeUrl), which gives it only for stored labels, and are sent there.
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("config").textContent);
  const byId = (id) => document.getElementById(id);
  const state = { assignment: null, labels: [], times: [], index: 0, shownAt: 0, busy: false, phase: "intro" };

  function show(section) {
    for (const id of ["intro", "task", "review", "done"]) byId(id).hidden = id !== section;
    state.phase = section;
  }

  function showError(message) {
    const box = byId("error");
    box.textContent = message;
    box.hidden = false;
  }

  async function postJson(url, body) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        credentials: "same-origin",
      });
    } catch (error) {
      throw new Error("The server could not be reached. Check your connection and try again.");
    }
    let data = null;
    try { data = await response.json(); } catch (error) { data = null; }
    if (!response.ok) {
      const detail = data && typeof data.detail === "string" ? data.detail : "the request was refused (HTTP " + response.status + ")";
      throw new Error(detail);
    }
    return data;
  }

  function acceptBody() {
    if (config.identity) return Object.assign({}, config.identity);
    const body = { worker_id: config.workerId };
    if (config.mode === "mturk") {
      body.mturk = { assignment_id: config.assignmentId, hit_id: config.hitId, turk_submit_to: config.turkSubmitTo };
    }
    return body;
  }

  function buildChoices() {
    const box = byId("choices");
    config.classNames.forEach((name, label) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = name;
      button.dataset.label = String(label);
      button.addEventListener("click", () => choose(label));
      box.appendChild(button);
    });
  }

  function render() {
    const total = state.assignment.num_items;
    if (state.index >= total) {
      show("review");
      byId("submit").focus();
      return;
    }
    show("task");
    byId("stimulus").src = state.assignment.item_urls[state.index];
    byId("current").textContent = String(state.index + 1);
    byId("total").textContent = String(total);
    const progress = byId("progress");
    progress.max = total;
    progress.value = state.labels.filter((label) => label !== undefined).length;
    for (const button of byId("choices").children) {
      button.classList.toggle("chosen", Number(button.dataset.label) === state.labels[state.index]);
    }
    byId("back").disabled = state.index === 0;
    state.shownAt = performance.now();
  }

  function choose(label) {
    if (state.phase !== "task" || state.busy) return;
    state.labels[state.index] = label;
    state.times[state.index] = Math.max(0, Math.round(performance.now() - state.shownAt));
    state.index += 1;
    render();
  }

  function back() {
    if ((state.phase !== "task" && state.phase !== "review") || state.busy || state.index === 0) return;
    state.index -= 1;
    render();
  }

  async function handOffToProlific() {
    show("done");
    byId("done-text").textContent = "Your answers are saved. Taking you back to Prolific...";
    try {
      const done = await postJson(config.completeUrl, config.identity);
      window.location.assign(done.completion_url);
    } catch (error) {
      showError(error.message + " Reload this page to try again.");
    }
  }

  function handOff() {
    if (config.mode === "prolific") {
      handOffToProlific();
      return;
    }
    if (config.mode !== "mturk") {
      show("done");
      byId("done-text").textContent = "Your answers are saved. You may close this page.";
      return;
    }
    show("done");
    byId("done-text").textContent = "Your answers are saved. Sending the HIT to MTurk...";
    const form = byId("mturk-form");
    form.action = config.turkSubmitTo + "/mturk/externalSubmit";
    byId("mturk-assignment-id").value = config.assignmentId;
    form.submit();
  }

  async function submit() {
    if (state.busy || state.phase !== "review") return;
    state.busy = true;
    byId("submit").disabled = true;
    byId("error").hidden = true;
    const labels = state.labels.map((label, position) => ({ position, label, response_ms: state.times[position] }));
    const body = Object.assign({ labels }, config.identity || { worker_id: config.workerId });
    if (config.mode === "mturk") body.mturk_assignment_id = config.assignmentId;
    try {
      await postJson(state.assignment.submit_url, body);
      handOff();
    } catch (error) {
      // Safe to press again: the server stores a submission once and answers a retry the same way.
      showError(error.message);
      byId("submit").disabled = false;
    } finally {
      state.busy = false;
    }
  }

  function onKey(event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (state.phase === "intro" && (event.key === "Enter" || event.key === " ") && !byId("start").disabled) {
      event.preventDefault();
      begin();
    } else if (state.phase === "task" && /^[0-9]$/.test(event.key)) {
      const label = Number(event.key);
      if (label < config.classNames.length) {
        event.preventDefault();
        choose(label);
      }
    } else if (event.key === "Backspace" || event.key === "ArrowLeft") {
      event.preventDefault();
      back();
    } else if (state.phase === "review" && event.key === "Enter") {
      event.preventDefault();
      submit();
    }
  }

  function begin() {
    if (state.phase !== "intro") return;
    render();
  }

  async function load() {
    try {
      state.assignment = await postJson(config.acceptUrl, acceptBody());
    } catch (error) {
      byId("start").textContent = "Unavailable";
      showError(error.message);
      return;
    }
    if (state.assignment.outcome === "submitted") {
      handOff();
      return;
    }
    for (const url of state.assignment.item_urls) new Image().src = url; // preload
    buildChoices();
    const start = byId("start");
    start.textContent = "Start";
    start.disabled = false;
    start.focus();
  }

  byId("start").addEventListener("click", begin);
  byId("back").addEventListener("click", back);
  byId("review-back").addEventListener("click", back);
  byId("submit").addEventListener("click", submit);
  document.addEventListener("keydown", onKey);
  load();
})();
