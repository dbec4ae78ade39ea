/* gridrun sweep-report --live: poll state.json every 2 s; when the sweep's files changed (a trial
   started, reported an epoch or ended), reload the page (rendered afresh by the server) where it was
   scrolled to. Stops once the sweep has ended and the page shows its last state. No network beyond
   the page's own server. */
(function () {
  "use strict";
  var KEY = "gridrun-sweep-live-scroll";
  var saved = window.sessionStorage.getItem(KEY);
  if (saved !== null) {
    window.sessionStorage.removeItem(KEY);
    window.scrollTo(0, parseFloat(saved) || 0);
  }
  var el = document.getElementById("gridrun-page");
  var page = el ? JSON.parse(el.textContent) : {};
  var rendered = page.live;
  var stamp = document.getElementById("live-status");
  var interval = 2000;

  function tick() {
    fetch("state.json", { cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error("state.json: HTTP " + r.status); return r.json(); })
      .then(function (state) {
        if (stamp) stamp.setAttribute("data-updated", new Date().toISOString());
        if (state.state !== rendered) {
          window.sessionStorage.setItem(KEY, String(window.scrollY));
          window.location.reload();
          return;
        }
        if (state.ended) {
          if (stamp) { stamp.classList.add("ended"); stamp.textContent = "The sweep has ended: this is its final state."; }
          return;
        }
        window.setTimeout(tick, interval);
      })
      .catch(function () { window.setTimeout(tick, interval * 2); });
  }
  window.setTimeout(tick, interval);
})();
