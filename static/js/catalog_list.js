// Item list: "select all" for bulk tagging.
(function () {
  "use strict";
  var all = document.getElementById("select-all");
  if (!all) { return; }
  all.addEventListener("change", function () {
    document.querySelectorAll('#bulk-form input[name="items"]').forEach(function (box) { box.checked = all.checked; });
  });
})();
