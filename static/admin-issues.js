// The console's issue page: follow a send live by polling its figures every second.
// (A file, not an inline script: the Content-Security-Policy forbids inline ones.)
(function () {
  "use strict";
  var box = document.getElementById("progress");
  if (!box || !box.dataset.progressUrl) return;
  var delay = 1000;

  function set(id, value) {
    var node = document.getElementById(id);
    if (node) node.textContent = value;
  }

  function show(data) {
    var counts = data.counts || {};
    Object.keys(counts).forEach(function (key) {
      var node = box.querySelector('[data-count="' + key + '"]');
      if (!node) return;
      // "Queued" on the page counts the messages in hand too: both are still to go.
      node.textContent = key === "queued" ? counts.queued + counts.sending : counts[key];
    });
    var bar = document.getElementById("progress-bar");
    if (bar) {
      bar.max = data.total || 1;
      bar.value = data.done;
      bar.textContent = Math.floor(data.percent) + "%";
    }
    set("done", data.done);
    set("total", data.total);
    // Whole percents, as on every console page (100 only when all is done).
    set("percent", Math.floor(data.percent));
    set("rate", data.rate === null ? "\u2014" : data.rate.toFixed(1));
    var status = document.getElementById("issue-status");
    if (status) {
      status.textContent = data.status;
      status.className = "status status-" + data.status;
    }
    box.dataset.status = data.status;
    var paused = document.getElementById("paused");
    if (paused) {
      paused.hidden = !data.paused_reason;
      set("paused-reason", data.paused_reason || "");
    }
    if (data.finished_text) set("finished", data.finished_text);
    var note = document.getElementById("delivery-note");
    if (note && data.finished) note.hidden = true;
  }

  function poll() {
    fetch(box.dataset.progressUrl, { cache: "no-store", credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (data) show(data);
        if (data && data.finished) return; // done: nothing changes any more but feedback
        // Scheduled or paused sends change rarely: look less often.
        delay = data && (data.status === "scheduled" || data.status === "paused") ? 5000 : 1000;
        // The server asks for a longer pause when counting a huge send takes a while.
        if (data && data.next_poll_ms > delay) delay = Math.min(data.next_poll_ms, 30000);
        window.setTimeout(poll, delay);
      })
      .catch(function () {
        delay = Math.min(delay * 2, 10000);
        window.setTimeout(poll, delay);
      });
  }

  if (box.dataset.status !== "sent") window.setTimeout(poll, delay);
})();
