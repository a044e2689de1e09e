// Draws every chart on the page from its figure, embedded as JSON with json_script.
// No inline script, so the Content-Security-Policy stays strict.
(function () {
  "use strict";
  function draw(root) {
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      var source = document.getElementById(el.dataset.chart);
      if (!source || el.dataset.drawn === source.textContent.length + "") return;
      var figure = JSON.parse(source.textContent);
      // No mode bar: its buttons would be focusable inside a role="img" container, whose
      // summary and the table beside it already say what the chart shows.
      window.Plotly.react(el, figure.data, figure.layout, {responsive: true, displayModeBar: false});
      el.dataset.drawn = source.textContent.length + "";
    });
  }
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSettle", function (event) { draw(event.target); });
  // The history comes back out of band when a re-test lands: draw it again.
  document.addEventListener("htmx:oobAfterSwap", function () { setTimeout(function () { draw(document); }, 0); });
})();
