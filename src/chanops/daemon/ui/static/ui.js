// chanops status page: live updates. The page is complete without this script; with
// it, the page follows /ui/live (server-sent events) and, when something changed,
// fetches itself again and swaps the regions marked data-live-region. Forms, focus
// and scroll position stay as they are. Loaded from /ui/static/ only (the
// Content-Security-Policy allows no inline script).
(function () {
  "use strict";
  var url = document.body.getAttribute("data-live");
  var badge = document.getElementById("live-state");
  if (!url || !window.EventSource || !window.fetch || !window.DOMParser) {
    return;
  }
  var wanted = 0;
  var busy = false;
  var again = null;

  function shown() {
    var main = document.getElementById("content");
    return main ? parseInt(main.getAttribute("data-version") || "0", 10) : 0;
  }

  function setState(text, cls) {
    if (badge) {
      badge.textContent = text;
      badge.className = "live " + cls;
    }
  }

  function swap(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var regions = document.querySelectorAll("[data-live-region]");
    for (var i = 0; i < regions.length; i++) {
      var fresh = doc.getElementById(regions[i].id);
      if (fresh) {
        regions[i].replaceWith(fresh);
      }
    }
    var main = doc.getElementById("content");
    var here = document.getElementById("content");
    if (main && here) {
      here.setAttribute("data-version", main.getAttribute("data-version") || "0");
    }
    document.title = doc.title || document.title;
  }

  function refresh() {
    if (busy) {
      return;
    }
    busy = true;
    // X-Chanops-Want: the version the stream announced; the daemon waits for it (at
    // most half a second) rather than answer with an older view.
    fetch(window.location.href, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { "X-Chanops-Want": String(wanted) },
    })
      .then(function (r) {
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html) {
          swap(html);
        }
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        // The daemon rebuilds its view at most twice a second: ask again until the
        // page shows the change the stream announced.
        if (shown() < wanted && again === null) {
          again = window.setTimeout(function () {
            again = null;
            refresh();
          }, 600);
        }
      });
  }

  var source = new EventSource(url);
  source.addEventListener("open", function () {
    setState("live", "on");
  });
  source.addEventListener("error", function () {
    setState("reconnecting", "off");
  });
  source.addEventListener("hello", function (e) {
    setState("live", "on");
    wanted = parseInt(e.data, 10) || 0;
    if (shown() < wanted) {
      refresh();
    }
  });
  source.addEventListener("change", function (e) {
    // data: "VERSION NAME NAME ..." (the connections concerned) or "VERSION *".
    var parts = String(e.data).split(" ");
    var main = document.getElementById("content");
    var mine = main ? main.getAttribute("data-connection") : null;
    if (mine && parts.indexOf("*") < 0 && parts.slice(1).indexOf(mine) < 0) {
      return; // a connection's page: another connection changed
    }
    wanted = parseInt(parts[0], 10) || wanted;
    refresh();
  });
  source.addEventListener("bye", function () {
    setState("daemon stopped", "off");
    source.close();
  });
})();
