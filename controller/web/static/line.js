// The screen's live part: one EventSource on /events naming the page's live regions
// (data-live="URL"). Regions the server renders once for every screen come down the
// stream already rendered ("part" messages, at most every 2 s, only when changed);
// the others are fetched again after "line" messages, at most once a second (REFRESH_MS)
// and always once after the last (a trailing throttle). A region is swapped (by htmx,
// which wires up what it contains) only when its HTML changed and no button in it is
// being pressed, so a refresh never eats a click.
(function () {
  "use strict";
  var REFRESH_MS = 1000;  // people read a screen once a second at most
  var RECONNECT_MS = 5000;  // a refused stream: open it again this often
  var timer = null;
  var pressed = null;
  var pushed = {};  // URL -> true: the server sends this region itself
  var held = {};  // URL -> HTML that came while a button in its region was pressed
  var pushes = {};  // URL -> parts pushed so far: a fetch answered after a push is older
  document.addEventListener("pointerdown", function (e) { pressed = e.target; });
  document.addEventListener("pointerup", function () {
    pressed = null;
    Object.keys(held).forEach(function (url) { show(url, held[url]); });
  });

  // all: every region (the stream just opened); else only those the server does not push
  function later(ms, all) {
    if (all) {
      if (timer !== null) clearTimeout(timer);
      timer = setTimeout(function () { refresh(true); }, ms);
    } else if (timer === null) {
      timer = setTimeout(function () { refresh(false); }, ms);
    }
  }

  function update(el, html) {
    if (el.getAttribute("data-html") === html) return true;
    if (pressed && el.contains(pressed)) return false;
    el.setAttribute("data-html", html);
    htmx.swap(el, html, { swapStyle: "innerHTML" });
    return true;
  }

  function show(url, html) {
    var done = true;
    document.querySelectorAll("[data-live]").forEach(function (el) {
      if (el.getAttribute("data-live") === url && !update(el, html)) done = false;
    });
    if (done) delete held[url]; else held[url] = html;
  }

  function refresh(all) {
    timer = null;
    document.querySelectorAll("[data-live]").forEach(function (el) {
      var url = el.getAttribute("data-live");
      if (!all && pushed[url]) return;
      var seen = pushes[url];
      fetch(url, { credentials: "same-origin", redirect: "manual" })
        .then(function (r) {
          if (r.type === "opaqueredirect" || r.status === 401) { ended(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) { if (html !== null && pushes[url] === seen) show(url, html); });
    });
  }

  function start() {
    var regions = document.querySelectorAll("[data-live]");
    if (!regions.length || !window.EventSource) return;
    var query = [];
    regions.forEach(function (el) {
      query.push("part=" + encodeURIComponent(el.getAttribute("data-live")));
    });
    var pulse = document.getElementById("pulse");
    connect("/events?" + query.join("&"), pulse);
  }

  // The browser reopens a stream that dropped by itself, but not one refused (an HTTP error
  // while the server was busy or restarting): that one is opened again here, a new stream
  // every RECONNECT_MS, so a screen left open never goes quietly stale (the pulse shows
  // meanwhile that it is not live; a session that no longer stands is refused each time).
  function connect(url, pulse) {
    var source = new EventSource(url);
    source.addEventListener("pushed", function (e) {
      pushed = {};
      JSON.parse(e.data).forEach(function (url) { pushed[url] = true; });
    });
    source.addEventListener("part", function (e) {
      var part = JSON.parse(e.data);
      pushes[part.url] = (pushes[part.url] || 0) + 1;
      show(part.url, part.html);
    });
    source.addEventListener("line", function (e) {
      if (pulse) pulse.classList.toggle("beat");
      // "missed": this page fell behind and the server dropped what it had queued for
      // it, parts too: fetch every region again, not only those it does not push.
      later(REFRESH_MS, JSON.parse(e.data).missed === true);
    });
    // What changed between rendering this page and subscribing is not in the stream:
    // fetch every live region once each time the stream (re)opens.
    source.addEventListener("open", function () {
      if (pulse) pulse.classList.add("on");
      later(0, true);
    });
    source.addEventListener("error", function () {
      if (pulse) pulse.classList.remove("on");
      if (source.readyState !== EventSource.CLOSED) return;  // the browser retries itself
      later(0, true);  // refused: a live region's fetch tells whether the session stands
      setTimeout(function () { connect(url, pulse); }, RECONNECT_MS);
    });
  }

  // The session no longer stands (logged out elsewhere, expired, or the screen restarted
  // with another signing key): nothing on this page will change again, so say so loudly
  // rather than leave it quietly stale.
  function ended() {
    if (document.getElementById("session-ended")) return;
    var note = document.createElement("p");
    note.id = "session-ended";
    note.className = "flash error";
    note.textContent = "This page is no longer live: your session ended. ";
    var again = document.createElement("a");
    again.href = "/";
    again.textContent = "Log in again";
    note.appendChild(again);
    document.body.insertBefore(note, document.body.firstChild);
  }
  document.addEventListener("DOMContentLoaded", start);
})();
