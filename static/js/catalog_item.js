// Item page: a keyboard-driven tag picker and shortcuts for the editor's queue.
//   type to filter, ArrowUp/ArrowDown to choose, Enter adds, Escape clears;
//   A accepts all suggestions, N opens the next item, U undoes the last change
//   (plain keys outside text fields, with Alt anywhere).
(function () {
  "use strict";
  var form = document.getElementById("tag-picker-form");
  var input = document.getElementById("tag-picker");
  var list = document.getElementById("tag-picker-list");
  var hidden = document.getElementById("tag-picker-id");
  var source = document.getElementById("tag-choices");
  if (!form || !input || !list || !source) { return; }
  var choices = JSON.parse(source.textContent);
  var current = [];
  var active = -1;
  var MAX = 12;

  function matches(query) {
    var words = query.toLowerCase().split(/\s+/).filter(Boolean);
    if (!words.length) { return []; }
    var found = choices.filter(function (c) {
      var label = c.label.toLowerCase();
      return words.every(function (w) { return label.indexOf(w) !== -1; });
    });
    // Tags whose own name starts with the query first, then shorter paths.
    var first = words[0];
    found.sort(function (a, b) {
      var an = a.label.split(" > ").pop().toLowerCase().indexOf(first) === 0 ? 0 : 1;
      var bn = b.label.split(" > ").pop().toLowerCase().indexOf(first) === 0 ? 0 : 1;
      return an - bn || a.label.length - b.label.length || a.label.localeCompare(b.label);
    });
    return found.slice(0, MAX);
  }

  function render() {
    list.replaceChildren();
    current.forEach(function (choice, n) {
      var li = document.createElement("li");
      li.id = "tag-option-" + choice.id;
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", n === active ? "true" : "false");
      li.textContent = choice.label;
      li.addEventListener("mousedown", function (event) {
        event.preventDefault();
        choose(n);
      });
      list.append(li);
    });
    list.hidden = current.length === 0;
    input.setAttribute("aria-expanded", current.length ? "true" : "false");
    if (active >= 0 && current[active]) {
      input.setAttribute("aria-activedescendant", "tag-option-" + current[active].id);
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  }

  function choose(n) {
    var choice = current[n];
    if (!choice) { return; }
    hidden.value = choice.id;
    input.value = choice.label;
    form.submit();
  }

  input.addEventListener("input", function () {
    hidden.value = "";
    current = matches(input.value);
    active = current.length ? 0 : -1;
    render();
  });

  input.addEventListener("keydown", function (event) {
    if (event.altKey) { return; }  // Alt+key shortcuts are handled below
    if (event.key === "ArrowDown" && current.length) {
      event.preventDefault();
      active = (active + 1) % current.length;
      render();
    } else if (event.key === "ArrowUp" && current.length) {
      event.preventDefault();
      active = (active - 1 + current.length) % current.length;
      render();
    } else if (event.key === "Enter") {
      event.preventDefault();
      if (active >= 0) { choose(active); } else if (input.value.trim()) { form.submit(); }
    } else if (event.key === "Escape") {
      input.value = "";
      current = [];
      active = -1;
      render();
    }
  });

  input.addEventListener("blur", function () {
    setTimeout(function () { list.hidden = true; input.setAttribute("aria-expanded", "false"); }, 150);
  });

  function submit(id) {
    var target = document.getElementById(id);
    if (target) { target.submit(); return true; }
    return false;
  }

  document.addEventListener("keydown", function (event) {
    var typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
    if ((typing && !event.altKey) || event.ctrlKey || event.metaKey) { return; }
    var key = event.key.toLowerCase();
    if (key === "a" && submit("accept-all-form")) {
      event.preventDefault();
    } else if (key === "n") {
      var next = document.getElementById("next-item");
      if (next) { event.preventDefault(); window.location.href = next.href; }
    } else if (key === "u" && submit("undo-form")) {
      event.preventDefault();
    } else if (key === "/" && !typing) {
      event.preventDefault();
      input.focus();
    }
  });
})();
