// Import page: poll a running import and keep its progress bar and status current.
(function () {
  "use strict";
  var box = document.getElementById("job");
  if (!box || box.dataset.finished === "true") { return; }

  function update(job) {
    var status = document.getElementById("job-status");
    status.textContent = job.status.charAt(0).toUpperCase() + job.status.slice(1);
    status.className = "badge " + job.status;
    document.getElementById("job-message").textContent = job.message;
    document.getElementById("job-progress").value = job.progress;
    document.getElementById("job-progress-label").textContent = job.progress;
    var error = document.getElementById("job-error");
    error.hidden = !job.error;
    error.textContent = job.error;
    return job.finished;
  }

  function poll() {
    fetch(box.dataset.url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : Promise.reject(response.status); })
      .then(function (job) { if (!update(job)) { setTimeout(poll, 1000); } })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 500);
})();
