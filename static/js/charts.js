// Render every Plotly figure on the page: <div data-plotly="id-of-json-script">.
(function () {
  "use strict";
  function render() {
    document.querySelectorAll("[data-plotly]").forEach(function (el) {
      var source = document.getElementById(el.dataset.plotly);
      if (!source) { return; }
      var figure = JSON.parse(source.textContent);
      var layout = Object.assign({}, figure.layout || {}, { autosize: true });
      Plotly.newPlot(el, figure.data || [], layout, { responsive: true, displaylogo: false });
      el.dataset.rendered = "true";
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", render);
  } else {
    render();
  }
})();
