// Preferences quiz: a tag cannot be both liked and disliked; ticking one unticks the other.
(function () {
  "use strict";
  var form = document.getElementById("quiz");
  if (!form) { return; }
  form.addEventListener("change", function (event) {
    var box = event.target;
    if (box.type !== "checkbox" || !box.checked) { return; }
    var other = box.name === "liked" ? "disliked" : "liked";
    form.querySelectorAll('input[name="' + other + '"]').forEach(function (el) {
      if (el.value === box.value) { el.checked = false; }
    });
  });
})();
