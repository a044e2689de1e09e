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
