// Poll a training run until it finishes and keep the progress bar, status and metrics current.
(function () {
  "use strict";
  var box = document.getElementById("run");
  if (!box || box.dataset.finished === "true") { return; }

  function fill(dl, entries, suffix) {
    dl.replaceChildren();
    entries.forEach(function (pair) {
      var dt = document.createElement("dt");
      var dd = document.createElement("dd");
      dt.textContent = pair[0];
      dd.textContent = typeof pair[1] === "number" && !Number.isInteger(pair[1]) ? pair[1].toFixed(4) + suffix : pair[1] + suffix;
      dl.append(dt, dd);
    });
  }

  function update(run) {
    var status = document.getElementById("run-status");
    status.textContent = run.status.charAt(0).toUpperCase() + run.status.slice(1);
    status.className = "badge " + run.status;
    document.getElementById("run-message").textContent = run.message;
    document.getElementById("run-progress").value = run.progress;
    document.getElementById("run-progress-label").textContent = run.progress;
    var error = document.getElementById("run-error");
    error.hidden = !run.error;
    error.textContent = run.error;
    fill(document.getElementById("run-metrics"), Object.entries(run.metrics), "");
    fill(document.getElementById("run-sizes"), Object.entries(run.data_sizes), "");
    fill(document.getElementById("run-timings"), Object.entries(run.timings), " s");
    return run.status === "succeeded" || run.status === "failed";
  }

  function poll() {
    fetch(box.dataset.url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : Promise.reject(response.status); })
      .then(function (run) { if (!update(run)) { setTimeout(poll, 1000); } })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 500);
})();
