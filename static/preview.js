// Live issue preview: reload the page when the issue file changes on disk.
// (A file, not an inline script: the site's Content-Security-Policy forbids inline ones.)
(function () {
  "use strict";
  var box = document.getElementById("preview");
  if (!box || !box.dataset.versionUrl) return;
  var current = box.dataset.version;
  var delay = 1000;

  function poll() {
    fetch(box.dataset.versionUrl, { cache: "no-store" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (data && data.version !== current) {
          window.location.reload();
          return;
        }
        delay = 1000;
        window.setTimeout(poll, delay);
      })
      .catch(function () {
        // The server restarted or is gone: keep trying, more slowly.
        delay = Math.min(delay * 2, 10000);
        window.setTimeout(poll, delay);
      });
  }

  window.setTimeout(poll, delay);
})();
