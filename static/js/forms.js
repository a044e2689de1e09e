// Test fields follow the chosen metric: only its parameters show, the "%" of a share's
// thresholds, and the upper threshold only for "between". Without JavaScript every field shows
// and the server explains what is wrong.
(function () {
  "use strict";
  function update(form) {
    var metric = form.querySelector("[data-metric-params]");
    if (!metric) return;
    var params = JSON.parse(metric.dataset.metricParams)[metric.value] || [];
    form.querySelectorAll("[data-param]").forEach(function (el) {
      el.hidden = params.indexOf(el.dataset.param) < 0;
    });
    // A share's thresholds are typed in percent: the "%" shows for those metrics only.
    var shares = JSON.parse(metric.dataset.shareMetrics || "[]");
    form.querySelectorAll("[data-share-unit]").forEach(function (el) {
      el.hidden = shares.indexOf(metric.value) < 0;
    });
    var comparator = form.querySelector("[name=comparator]");
    var high = form.querySelector("[data-field=threshold_high]");
    if (comparator && high) high.hidden = comparator.value !== "between";
    form.querySelectorAll("[data-field=comparator], [data-field=threshold], [data-field=min_sample], [data-field=segment], [data-field=channel], [data-field=window_days]")
      .forEach(function (el) { if (el.dataset.field !== "threshold_high") el.hidden = !metric.value; });
    if (high && !metric.value) high.hidden = true;
  }
  function all(root) { (root || document).querySelectorAll("form").forEach(update); }
  document.addEventListener("DOMContentLoaded", function () { all(document); });
  document.addEventListener("htmx:afterSettle", function (e) { all(e.target); });
  document.addEventListener("change", function (e) { if (e.target.form) update(e.target.form); });
})();

// On a phone the plan's tabs scroll sideways in their bar: the current tab is brought into
// view, and the bar names the side(s) where more tabs are (app.css fades that edge).
(function () {
  "use strict";
  function mark(bar) {
    var more = [];
    if (bar.scrollLeft > 1) more.push("start");
    if (bar.scrollLeft + bar.clientWidth < bar.scrollWidth - 1) more.push("end");
    bar.dataset.more = more.join(" ");
  }
  function show(bar) {
    var current = bar.querySelector("[aria-current=page]");
    if (current && bar.scrollWidth > bar.clientWidth) {
      // Centred in the bar, which alone scrolls (scrollIntoView could move the page too).
      var edge = bar.getBoundingClientRect(), tab = current.getBoundingClientRect();
      bar.scrollLeft += tab.left - edge.left - (edge.width - tab.width) / 2;
    }
    mark(bar);
    bar.addEventListener("scroll", function () { mark(bar); }, {passive: true});
  }
  document.addEventListener("DOMContentLoaded", function () {
    var bars = document.querySelectorAll("[data-scrolling-tabs]");
    bars.forEach(show);
    window.addEventListener("resize", function () { bars.forEach(mark); });
  });
})();
