// The console's navigation on a narrow screen: one "Menu" button that opens and closes it.
// Without this script the links simply stay visible (they wrap).
(function () {
  "use strict";
  var button = document.getElementById("nav-toggle");
  var bar = document.querySelector(".admin-bar");
  if (!button || !bar) return;
  button.hidden = false;
  bar.classList.add("collapsible");
  button.addEventListener("click", function () {
    var open = button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", open ? "true" : "false");
    bar.classList.toggle("open", open);
  });
})();
