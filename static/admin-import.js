// The console's import page: follow an import by polling its JSON every 700 ms.
// (A file, not an inline script: the Content-Security-Policy forbids inline ones.)
(function () {
  "use strict";
  var box = document.getElementById("import-progress");
  if (!box || !box.dataset.progressUrl) return;
  var delay = 700;
  var format = new Intl.NumberFormat("en-US");

  function byId(id) { return document.getElementById(id); }

  function showBadRows(data) {
    var section = byId("bad-rows");
    var body = byId("bad-rows-body");
    if (!section || !body || !data.bad_rows.length) return;
    while (body.firstChild) body.removeChild(body.firstChild);
    data.bad_rows.forEach(function (bad) {
      var row = document.createElement("tr");
      var line = document.createElement("td");
      line.className = "num";
      line.textContent = bad.line;
      var reason = document.createElement("td");
      reason.textContent = bad.reason; // text, never HTML: reasons quote the file
      row.appendChild(line);
      row.appendChild(reason);
      body.appendChild(row);
    });
    var hidden = byId("bad-rows-hidden");
    if (hidden) {
      hidden.hidden = !data.bad_rows_hidden;
      byId("bad-rows-hidden-count").textContent = format.format(data.bad_rows_hidden);
    }
    section.hidden = false;
  }

  function show(data) {
    Object.keys(data.counts).forEach(function (key) {
      var node = box.querySelector('[data-count="' + key + '"]');
      if (node) node.textContent = format.format(data.counts[key]);
    });
    var bar = byId("import-bar");
    if (bar) {
      bar.value = data.percent;
      bar.textContent = data.percent + "%";
    }
    byId("import-percent").textContent = data.percent;
    var status = byId("import-status");
    status.textContent = data.status;
    status.className = "status status-" + data.status;
    box.dataset.status = data.status;
    if (data.error) {
      byId("import-error-text").textContent = data.error;
      byId("import-failure").hidden = false;
    }
    if (data.finished) {
      var refresh = byId("import-refresh");
      if (refresh) refresh.hidden = true;
      showBadRows(data);
    }
  }

  function poll() {
    fetch(box.dataset.progressUrl, { cache: "no-store", credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (data) show(data);
        if (data && data.finished) return;
        delay = 700;
        window.setTimeout(poll, delay);
      })
      .catch(function () {
        delay = Math.min(delay * 2, 10000);
        window.setTimeout(poll, delay);
      });
  }

  if (box.dataset.status !== "done" && box.dataset.status !== "failed") poll();
})();
