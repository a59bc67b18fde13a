// The screen's live part: one EventSource on /events; when the line changes, the
// page's live regions (data-live="URL") are fetched again, at most once a second (REFRESH_MS)
// and always once after the last event (a trailing throttle), so a busy line costs
// each browser a few requests a second, not one per event. A region is swapped (by
// htmx, which wires up what it contains) only when its HTML changed and no button in
// it is being pressed, so a refresh never eats a click.
(function () {
  "use strict";
  var REFRESH_MS = 1000;  // people read a screen once a second at most
  var timer = null;
  var pressed = null;
  document.addEventListener("pointerdown", function (e) { pressed = e.target; });
  document.addEventListener("pointerup", function () { pressed = null; });

  function later(ms) { if (timer === null) timer = setTimeout(refresh, ms); }

  function update(el, html) {
    if (el.getAttribute("data-html") === html) return;
    if (pressed && el.contains(pressed)) { later(REFRESH_MS); return; }
    el.setAttribute("data-html", html);
    htmx.swap(el, html, { swapStyle: "innerHTML" });
  }

  function refresh() {
    timer = null;
    document.querySelectorAll("[data-live]").forEach(function (el) {
      fetch(el.getAttribute("data-live"), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) update(el, html); });
    });
  }

  function start() {
    if (!document.querySelector("[data-live]") || !window.EventSource) return;
    var pulse = document.getElementById("pulse");
    var source = new EventSource("/events");
    source.addEventListener("line", function () {
      if (pulse) pulse.classList.toggle("beat");
      later(REFRESH_MS);
    });
    // What changed between rendering this page and subscribing is not in the stream:
    // fetch the live parts once each time the stream (re)opens.
    source.addEventListener("open", function () {
      if (pulse) pulse.classList.add("on");
      later(0);
    });
    source.addEventListener("error", function () { if (pulse) pulse.classList.remove("on"); });
  }
  document.addEventListener("DOMContentLoaded", start);
})();
