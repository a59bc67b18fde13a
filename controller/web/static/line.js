// The screen's live part: one EventSource on /events; when the line changes, the
// page's live regions (data-live="URL") are fetched again with htmx, at most every
// REFRESH_MS and always once after the last event (a trailing throttle), so a busy
// line costs each browser a few requests a second, not one per event.
(function () {
  "use strict";
  var REFRESH_MS = 400;
  var timer = null;
  function refresh() {
    timer = null;
    document.querySelectorAll("[data-live]").forEach(function (el) {
      htmx.ajax("GET", el.getAttribute("data-live"), { target: el, swap: "innerHTML" });
    });
  }
  function start() {
    if (!document.querySelector("[data-live]") || !window.EventSource) return;
    var pulse = document.getElementById("pulse");
    var source = new EventSource("/events");
    source.addEventListener("line", function () {
      if (pulse) pulse.classList.toggle("beat");
      if (timer === null) timer = setTimeout(refresh, REFRESH_MS);
    });
    source.addEventListener("open", function () { if (pulse) pulse.classList.add("on"); });
    source.addEventListener("error", function () { if (pulse) pulse.classList.remove("on"); });
  }
  document.addEventListener("DOMContentLoaded", start);
})();
