// The labeling page: consent, accept, show the images one at a time, keep each label on the
// server as it is given, submit, debrief, hand off. Its data comes from the JSON block
// #config (no inline script: the CSP forbids it).
//
// The page is a sequence of phases; each has one section of label.html and an `enter`
// function, and `go(name)` is the only way from one to the next:
//
//   consent -> loading -> (waiting -> loading)* -> intro -> task <-> review -> submitting
//           -> debrief -> done
//   consent -> declining -> declined              (nothing but the refusal is stored)
//   loading -> unavailable                        (refused: the reason is shown)
//   loading -> debrief -> done                    (already submitted: only the hand-off is left)
//
// Nothing is allocated before the person agrees: "I agree" is what sends the accept, with the
// SHA-256 of the consent text shown (config.consentSha256); the server refuses any other.
// A reload, a closed tab reopened from MTurk, or a crashed browser comes back through consent
// and loading: the accept answers with the labels saved so far, and the task resumes at the
// first image without one. Only after the server has stored the submission (and answered with
// the debrief, shown before anything else) does the page post to MTurk's externalSubmit, so
// MTurk never hears of a submission the study does not have.
//
// A source whose ids are more than a worker id (Prolific: participant, study, session) passes
// them as config.identity, sent with every request; Prolific's participants then get the
// completion URL from the server (config.completeUrl), which gives it only for stored labels,
// after the debrief.
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("config").textContent);
  const byId = (id) => document.getElementById(id);
  const SECTIONS = ["consent", "declined", "intro", "wait", "task", "review", "debrief", "done"];
  const MAX_WAIT_S = 600; // a Retry-After longer than this is shown, not waited for
  const state = {
    phase: null,
    assignment: null,
    debrief: null,
    labels: [],
    times: [],
    index: 0,
    shownAt: 0,
    saving: Promise.resolve(),
  };

  // ---- talking to the server ----------------------------------------------------------

  class RequestError extends Error {
    constructor(message, status, retryAfter) {
      super(message);
      this.status = status;
      this.retryAfter = retryAfter;
    }
  }

  async function send(method, url, body) {
    let response;
    try {
      response = await fetch(url, {
        method,
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        credentials: "same-origin",
      });
    } catch (error) {
      throw new RequestError("The server could not be reached. Check your connection and try again.", 0, 5);
    }
    let data = null;
    try { data = await response.json(); } catch (error) { data = null; }
    if (!response.ok) {
      const detail = data && typeof data.detail === "string" ? data.detail : "the request was refused (HTTP " + response.status + ")";
      const retryAfter = Number(response.headers.get("Retry-After")) || null;
      throw new RequestError(detail, response.status, retryAfter);
    }
    return data;
  }

  // Who is acting: Prolific's ids, MTurk's ids, or the lab invitation code.
  function who() {
    if (config.identity) return Object.assign({}, config.identity);
    if (config.mode === "mturk") return { worker_id: config.workerId, mturk_assignment_id: config.assignmentId };
    return { code: config.code };
  }

  function acceptBody() {
    const consent = { consent_sha256: config.consentSha256 };
    if (config.identity) return Object.assign({}, config.identity, consent);
    if (config.mode === "mturk") {
      return Object.assign(consent, {
        worker_id: config.workerId,
        mturk: { assignment_id: config.assignmentId, hit_id: config.hitId, turk_submit_to: config.turkSubmitTo },
      });
    }
    return Object.assign(consent, { code: config.code });
  }

  // What someone who declined is asked to do on the market they came from.
  const DECLINED = {
    mturk: "Please return this HIT (the \u201cReturn\u201d button on the MTurk page) so that another worker can take it.",
    prolific: "Please return your submission on Prolific (\u201cStop without completing\u201d) so that your place goes to someone else.",
    local: "You may close this page.",
  };

  // Each label goes to the server as it is given, one after another; a failed save is tried
  // again a few times, and the submission carries every label anyway.
  function saveLabel(position) {
    const body = Object.assign(who(), { label: state.labels[position], response_ms: state.times[position] });
    const url = state.assignment.label_url_prefix + position;
    state.saving = state.saving.then(async () => {
      for (let attempt = 0; attempt < 4; attempt += 1) {
        if (state.phase === "submitting" || state.phase === "debrief" || state.phase === "done") return;
        try {
          await send("PUT", url, body);
          byId("notice").hidden = true;
          return;
        } catch (error) {
          if (error.status && error.status !== 429 && error.status < 500) {
            notice("Your answer could not be kept on the server (" + error.message + "). You can go on: all answers are sent when you submit.");
            return;
          }
          await sleep(1000 * (error.retryAfter || 2 ** attempt));
        }
      }
      notice("Your answers are not reaching the server right now. You can go on: all answers are sent when you submit.");
    });
  }

  // ---- small helpers ------------------------------------------------------------------

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function showError(message) {
    const box = byId("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function notice(message) {
    const box = byId("notice");
    box.textContent = message;
    box.hidden = false;
  }

  function firstUnlabeled() {
    for (let i = 0; i < state.assignment.num_items; i += 1) {
      if (state.labels[i] === undefined) return i;
    }
    return state.assignment.num_items;
  }

  // ---- the phases -----------------------------------------------------------------------

  const phases = {
    consent() {
      showError("");
      byId("agree").disabled = false;
      byId("decline").disabled = false;
      byId("consent-text").focus();
    },

    async declining() {
      byId("agree").disabled = true;
      byId("decline").disabled = true;
      try {
        await send("POST", config.declineUrl, { consent_sha256: config.consentSha256, source: config.mode });
      } catch (error) {
        // The refusal could not be noted; the person declined all the same.
      }
      go("declined");
    },

    declined() {
      byId("declined-text").textContent = DECLINED[config.mode] || DECLINED.local;
    },

    async loading() {
      showError("");
      try {
        state.assignment = await send("POST", config.acceptUrl, acceptBody());
      } catch (error) {
        if (error.retryAfter && error.retryAfter <= MAX_WAIT_S) {
          go("waiting", error);
        } else {
          go("unavailable", error);
        }
        return;
      }
      if (state.assignment.outcome === "submitted") {
        state.debrief = state.assignment.debrief;
        go("debrief");
        return;
      }
      for (const saved of state.assignment.labels) {
        state.labels[saved.position] = saved.label;
        state.times[saved.position] = saved.response_ms;
      }
      for (const url of state.assignment.item_urls) new Image().src = url; // preload
      buildChoices();
      go("intro");
    },

    async waiting(error) {
      byId("wait-text").textContent = error.message;
      for (let left = error.retryAfter; left > 0; left -= 1) {
        byId("wait-seconds").textContent = String(left);
        await sleep(1000);
        if (state.phase !== "waiting") return;
      }
      go("loading");
    },

    unavailable(error) {
      const start = byId("start");
      start.textContent = "Unavailable";
      start.disabled = true;
      showError(error.message);
    },

    intro() {
      const start = byId("start");
      state.index = firstUnlabeled();
      start.textContent = state.index > 0 ? "Continue with image " + Math.min(state.index + 1, state.assignment.num_items) : "Start";
      start.disabled = false;
      start.focus();
    },

    task() {
      const total = state.assignment.num_items;
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
    },

    review() {
      byId("submit").disabled = false;
      byId("submit").focus();
    },

    async submitting() {
      byId("submit").disabled = true;
      showError("");
      // A label still on its way would reach the server after the submission and be refused
      // (409): wait for it (saves queued behind it see this phase and stop).
      await state.saving;
      const labels = state.labels.map((label, position) => ({ position, label, response_ms: state.times[position] }));
      try {
        const stored = await send("POST", state.assignment.submit_url, Object.assign(who(), { labels }));
        state.debrief = stored.debrief;
      } catch (error) {
        // Safe to press again: the server stores a submission once and answers a retry the same way.
        showError(error.message);
        go("review");
        return;
      }
      go("debrief");
    },

    // The labels are stored; the debrief comes before the hand-off to the market. Its HTML was
    // sanitized by the server when the lab attached it (study_server/protocol_texts.py).
    debrief() {
      byId("notice").hidden = true;
      if (!state.debrief) {
        go("done");
        return;
      }
      byId("debrief-text").innerHTML = state.debrief.html;
      byId("debrief-continue").textContent = config.mode === "mturk" ? "Finish and submit the HIT" : config.mode === "prolific" ? "Finish and return to Prolific" : "Finish";
      byId("debrief-continue").disabled = false;
      byId("debrief-text").focus();
    },

    async done() {
      byId("notice").hidden = true;
      if (config.mode === "prolific") {
        byId("done-text").textContent = "Your answers are saved. Taking you back to Prolific...";
        try {
          const finished = await send("POST", config.completeUrl, config.identity);
          window.location.assign(finished.completion_url);
        } catch (error) {
          showError(error.message + " Reload this page to try again.");
        }
        return;
      }
      if (config.mode !== "mturk") {
        byId("done-text").textContent = "Your answers are saved. You may close this page.";
        return;
      }
      byId("done-text").textContent = "Your answers are saved. Sending the HIT to MTurk...";
      const form = byId("mturk-form");
      form.action = config.turkSubmitTo + "/mturk/externalSubmit";
      byId("mturk-assignment-id").value = config.assignmentId;
      form.submit();
    },
  };

  // The section each phase shows.
  const SHOWN = {
    consent: "consent", declining: "consent", declined: "declined",
    loading: "intro", waiting: "wait", unavailable: "intro", intro: "intro", task: "task",
    review: "review", submitting: "review", debrief: "debrief", done: "done",
  };

  function go(name, argument) {
    state.phase = name;
    for (const id of SECTIONS) byId(id).hidden = id !== SHOWN[name];
    phases[name](argument);
  }

  // ---- what the person does -----------------------------------------------------------

  function buildChoices() {
    const box = byId("choices");
    if (box.children.length) return;
    config.classNames.forEach((name, label) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = name;
      button.dataset.label = String(label);
      button.addEventListener("click", () => choose(label));
      box.appendChild(button);
    });
  }

  function begin() {
    if (state.phase !== "intro" || byId("start").disabled) return;
    go(state.index >= state.assignment.num_items ? "review" : "task");
  }

  function choose(label) {
    if (state.phase !== "task") return;
    state.labels[state.index] = label;
    state.times[state.index] = Math.max(0, Math.round(performance.now() - state.shownAt));
    saveLabel(state.index);
    state.index += 1;
    go(state.index >= state.assignment.num_items ? "review" : "task");
  }

  function back() {
    if ((state.phase !== "task" && state.phase !== "review") || state.index === 0) return;
    state.index -= 1;
    go("task");
  }

  function submit() {
    if (state.phase === "review") go("submitting");
  }

  function agree() {
    if (state.phase === "consent") go("loading");
  }

  function decline() {
    if (state.phase === "consent") go("declining");
  }

  function finish() {
    if (state.phase !== "debrief") return;
    byId("debrief-continue").disabled = true;
    go("done");
  }

  function onKey(event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (state.phase === "intro" && (event.key === "Enter" || event.key === " ")) {
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

  byId("agree").addEventListener("click", agree);
  byId("decline").addEventListener("click", decline);
  byId("start").addEventListener("click", begin);
  byId("back").addEventListener("click", back);
  byId("review-back").addEventListener("click", back);
  byId("submit").addEventListener("click", submit);
  byId("debrief-continue").addEventListener("click", finish);
  document.addEventListener("keydown", onKey);
  go("consent");
})();
