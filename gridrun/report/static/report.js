/* gridrun report pages: draw the plotly charts, sort tables, follow a live run. No network. */
(function () {
  "use strict";

  function readJSON(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  var template = readJSON("gridrun-chart-template");
  var config = { responsive: true, displaylogo: false };

  /* Charts without plotly.js: the shared file the page points to is missing (the page was moved or
     mailed on its own). Say so in place of each chart, with the fix. */
  function noPlotly() {
    var tag = document.querySelector("script[data-gridrun-plotly]");
    var where = tag ? tag.getAttribute("src") : "plotly.js";
    document.querySelectorAll(".chart[data-figure]").forEach(function (div) {
      var p = document.createElement("p");
      p.className = "notice missing-plotly";
      p.textContent = "Chart not drawn: the chart library " + where + " was not found next to this page. " +
        "Write the page again inside its runs dir, or write a single file with --self-contained " +
        "(self_contained=True in Python).";
      div.style.height = "auto";
      div.style.minHeight = "0";
      div.appendChild(p);
    });
  }

  /* Tick spacing of an epoch axis, as charts.epoch_step(): whole epochs, about 10 ticks at most. */
  function epochStep(epochs) {
    var step = 1, factors = [2, 2.5, 2], i = 0;
    while (epochs / step > 10) { step = Math.round(step * factors[i % 3]); i++; }
    return step;
  }

  function drawCharts() {
    if (typeof Plotly === "undefined") { noPlotly(); return; }
    document.querySelectorAll(".chart[data-figure]").forEach(function (div) {
      var fig = readJSON(div.getAttribute("data-figure"));
      if (!fig) return;
      fig.layout = fig.layout || {};
      if (template) fig.layout.template = template;
      Plotly.newPlot(div, fig.data, fig.layout, config);
    });
  }

  /* Sortable tables: click a header to sort by that column; click again to reverse. */
  function cellKey(row, index) {
    var cell = row.cells[index];
    if (!cell) return "";
    return cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
  }

  function compareKeys(a, b) {
    var na = parseFloat(a), nb = parseFloat(b);
    var aNum = a !== "" && !isNaN(na) && isFinite(a), bNum = b !== "" && !isNaN(nb) && isFinite(b);
    if (aNum && bNum) return na - nb;
    if (a === "" && b !== "") return 1;   /* empty cells last */
    if (b === "" && a !== "") return -1;
    if (aNum !== bNum) return aNum ? -1 : 1;
    return a.localeCompare(b);
  }

  function makeSortable(table) {
    var headers = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(headers, function (th, index) {
      th.classList.add("sort-header");
      th.setAttribute("title", "Sort by " + th.textContent.trim());
      th.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(headers, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) {
          var ka = cellKey(r1, index), kb = cellKey(r2, index);
          if (ka === "" || kb === "") return compareKeys(ka, kb); /* empty last either way */
          var c = compareKeys(ka, kb);
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }

  /* Live view: poll metrics.json and properties.json (served next to the page) every 2 s. */
  function seriesXY(values) {
    var x = [], y = [];
    for (var i = 0; i < values.length; i++) {
      x.push(i + 1);
      var v = values[i];
      y.push(typeof v === "number" && isFinite(v) ? v : null);
    }
    return { x: x, y: y };
  }

  function sameNames(a, b) {  /* as sets: JS and Python may sort non-ASCII names differently */
    return a.length === b.length && a.every(function (n) { return b.indexOf(n) >= 0; });
  }

  window.gridrunLive = function (intervalMs) {
    var page = readJSON("gridrun-page") || {};
    var known = page.metrics || [];
    var interval = intervalMs || 2000;
    var stamp = document.getElementById("live-status");

    function fetchJSON(url) {
      return fetch(url, { cache: "no-store" }).then(function (r) {
        if (!r.ok) throw new Error(url + ": HTTP " + r.status);
        return r.json();
      });
    }

    function update(metrics) {
      var names = Object.keys(metrics).filter(function (n) { return Array.isArray(metrics[n]); });
      if (!sameNames(names, known)) { window.location.reload(); return; }
      var epochs = 0;
      names.forEach(function (n) { epochs = Math.max(epochs, metrics[n].length); });
      var ep = document.getElementById("live-epochs");
      if (ep) ep.textContent = String(epochs);
      document.querySelectorAll(".chart[data-figure]").forEach(function (div) {
        if (!div.data) return;
        var data = div.data.map(function (trace) {
          var name = trace.meta && trace.meta.metric;
          if (!name || !metrics[name]) return trace;
          var xy = seriesXY(metrics[name]);
          return Object.assign({}, trace, { x: xy.x, y: xy.y });
        });
        var layout = div.layout;
        if (layout.xaxis && layout.xaxis.tickmode === "linear") {
          var n = 1;
          data.forEach(function (t) { if (t.x) n = Math.max(n, t.x.length); });
          var step = epochStep(n);
          layout = Object.assign({}, layout, { xaxis: Object.assign({}, layout.xaxis,
            { dtick: step, tick0: step === 1 ? 1 : 0 }) });
        }
        Plotly.react(div, data, layout, config);
      });
    }

    function tick() {
      Promise.all([fetchJSON("metrics.json").catch(function () { return null; }),
                   fetchJSON("properties.json").catch(function () { return null; })])
        .then(function (res) {
          if (res[0]) update(res[0]);
          var status = res[1] && res[1].status;
          var st = document.getElementById("live-run-status");
          if (st && status) st.textContent = status;
          if (stamp) stamp.setAttribute("data-updated", new Date().toISOString());
          if (status && status !== "running") {
            if (stamp) stamp.classList.add("ended");
            return; /* the run ended: last update done, stop polling */
          }
          window.setTimeout(tick, interval);
        });
    }
    window.setTimeout(tick, interval);
  };

  drawCharts();
  document.querySelectorAll("table.sortable").forEach(makeSortable);
})();
