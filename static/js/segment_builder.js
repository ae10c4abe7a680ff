// Segment rule builder: edits the rule JSON (hidden field) with a form, and shows a live size estimate.
(function () {
  "use strict";
  var hidden = document.getElementById("id_rule");
  var root = document.getElementById("rule-builder");
  if (!hidden || !root) { return; }
  var data = JSON.parse(document.getElementById("segment-builder-data").textContent);
  var estimateUrl = root.dataset.estimateUrl;
  var output = document.getElementById("segment-estimate");
  var errorBox = document.getElementById("estimate-error");
  var csrf = document.querySelector("input[name=csrfmiddlewaretoken]").value;

  var events = [""].concat(data.event_types);
  var tags = [""].concat(data.tags);
  var F = {
    event: { label: "event", type: "select", options: events },
    name: { label: "or event name", type: "text" },
    item_tag: { label: "item tagged", type: "select", options: tags },
    count_op: { label: "times", type: "select", options: ["at_least", "at_most", "exactly"] },
    count: { label: "N", type: "number" },
    last_days: { label: "in the last (days)", type: "number" },
    long_days: { label: "long window (days)", type: "number" },
    recent_days: { label: "not in the last (days)", type: "number" },
    then_event: { label: "then event", type: "select", options: events },
    within_hours: { label: "within (hours)", type: "number" },
    field: { label: "trait", type: "text" },
    trait_op: { key: "op", label: "operator", type: "select", options: data.trait_ops },
    value: { label: "value", type: "text" },
    old_days: { label: "did it between (days ago)", type: "number" },
    gap_days: { label: "and (days ago), then not until", type: "number" },
    again_days: { key: "recent_days", label: "again in the last (days)", type: "number" },
    metric: { label: "metric", type: "select", options: data.engagement_metrics },
    watch_property: { key: "property", label: "watch-time property (seconds)", type: "text",
      when: function (c) { return c.metric === "watch_time"; } },
    cmp: { key: "op", label: "compare", type: "select", options: ["gte", "lte"] },
    number_value: { key: "value", label: "value", type: "number" },
    group: { label: "RFM group", type: "select", options: [""].concat(data.rfm_groups) },
    score: { label: "or score", type: "select", options: ["", "recency", "frequency", "monetary"] },
    min: { label: "from (1-5)", type: "number", when: function (c) { return !!c.score; } },
    max: { label: "to (1-5)", type: "number", when: function (c) { return !!c.score; } },
    experiment: { label: "experiment", type: "select", options: [""].concat(Object.keys(data.experiments)) },
    variant: { label: "variant", type: "variant" },
    exposed: { label: "exposed only", type: "checkbox" },
    properties: { label: "where property", type: "properties" },
    window: { label: "when", type: "window" },
    window_optional: { label: "when", type: "window", optional: true },
    signal: { label: "signal", type: "select", options: ["abandon", "cart_abandon"] },
    segment: { label: "segment", type: "segment" },
    tag: { label: "tag", type: "select", options: tags },
    sentiment: { label: "sentiment", type: "select", options: ["like", "dislike"] }
  };
  var KINDS = {
    performed: { fields: ["event", "name", "item_tag", "count_op", "count", "window_optional", "properties"],
      defaults: { event: "play", count_op: "at_least", count: 1, last_days: 30 } },
    not_performed: { fields: ["event", "name", "item_tag", "window_optional", "properties"],
      defaults: { event: "play", last_days: 7 } },
    first_time_within: { fields: ["event", "name", "item_tag", "window", "properties"],
      defaults: { event: "purchase", last_days: 7 } },
    stopped: { fields: ["event", "name", "item_tag", "long_days", "recent_days", "properties"],
      defaults: { event: "play", long_days: 90, recent_days: 14 } },
    restarted: { fields: ["event", "name", "item_tag", "old_days", "gap_days", "again_days", "properties"],
      defaults: { event: "play", old_days: 90, gap_days: 30, recent_days: 7 } },
    sequence: { fields: ["event", "then_event", "within_hours", "window_optional"],
      defaults: { event: "add_to_cart", then_event: "purchase", within_hours: 24 } },
    trait: { fields: ["field", "trait_op", "value"], defaults: { field: "plan", op: "eq", value: "" } },
    engagement: { fields: ["metric", "cmp", "number_value", "watch_property", "last_days"],
      defaults: { metric: "completion_rate", op: "gte", value: 0.5, last_days: 30 } },
    rfm: { fields: ["group", "score", "min", "max"], defaults: { group: "champions" } },
    frustration: { fields: ["signal", "count", "last_days", "within_hours"],
      defaults: { signal: "abandon", count: 1, last_days: 30 } },
    member_of: { fields: ["segment"], defaults: { segment: data.segments.length ? data.segments[0].id : null } },
    experiment_variant: { fields: ["experiment", "variant", "exposed"],
      defaults: { experiment: Object.keys(data.experiments)[0] || "" } },
    declared_preference: { fields: ["tag", "sentiment"], defaults: { tag: data.tags[0] || "", sentiment: "like" } }
  };

  var rule;
  try { rule = JSON.parse(hidden.value || "null"); } catch (e) { rule = null; }
  if (!rule || !rule.root) { rule = { version: 1, root: { op: "and", not: false, conditions: [] } }; }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") { node.textContent = attrs[k]; } else { node.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) { node.appendChild(c); });
    return node;
  }

  function traitValue(op, raw) {
    var numeric = function (v) { v = v.trim(); return v !== "" && !isNaN(Number(v)) ? Number(v) : v; };
    if (op === "is_set") { return undefined; }
    if (op === "between" || op === "in") { return raw.split(",").map(numeric); }
    if (op === "gt" || op === "lt") { return Number(raw); }
    return op === "eq" || op === "neq" ? numeric(raw) : raw;
  }

  function propertyRow(cond, n, label, path) {
    // One filter of the condition's property list; typing edits it in place (no re-render,
    // so the focus stays), adding or removing one re-renders the condition.
    var prop = cond.properties[n];
    var rowLabel = label + " property " + (n + 1);
    var name = el("input", { type: "text", "aria-label": rowLabel + " name", placeholder: "property", size: "10" });
    name.value = prop.property || "";
    var op = el("select", { "aria-label": rowLabel + " operator" });
    data.trait_ops.forEach(function (o) { op.appendChild(el("option", { value: o, text: o.replace(/_/g, " ") })); });
    op.value = prop.op || "eq";
    var value = el("input", { type: "text", "aria-label": rowLabel + " value", placeholder: "value", size: "10" });
    value.value = prop.value === undefined ? "" : (Array.isArray(prop.value) ? prop.value.join(",") : prop.value);
    value.hidden = op.value === "is_set";
    function update() {
      var next = { property: name.value.trim(), op: op.value };
      var v = traitValue(op.value, value.value);
      if (v !== undefined) { next.value = v; }
      value.hidden = op.value === "is_set";
      cond.properties[n] = next;
      changed(false);
    }
    [name, value].forEach(function (i) { i.addEventListener("input", update); });
    op.addEventListener("change", update);
    var remove = el("button", { type: "button", class: "btn small", text: "×", "aria-label": "Remove " + rowLabel });
    remove.addEventListener("click", function () {
      cond.properties.splice(n, 1);
      if (!cond.properties.length) { delete cond.properties; }
      changed(true);
    });
    return el("div", { class: "rb-property", "data-path": path + ".properties[" + n + "]" }, [name, op, value, remove]);
  }

  function propertiesInput(cond, label, path) {
    var rows = (cond.properties || []).map(function (prop, n) { return propertyRow(cond, n, label, path); });
    var add = el("button", { type: "button", class: "btn small", text: "+ property filter",
      "aria-label": "Add a property filter to " + label });
    add.addEventListener("click", function () {
      cond.properties = (cond.properties || []).concat([{ property: "", op: "eq", value: "" }]);
      changed(true);
    });
    var head = el("span", { text: rows.length ? F.properties.label + " (all must hold)" : "" });
    return el("div", { class: "rb-field rb-properties" }, [head].concat(rows).concat([add]));
  }

  function isoDay(offsetDays) {
    var d = new Date(Date.now() - offsetDays * 86400000);
    return d.toISOString().slice(0, 10);  // UTC, like the rule's dates
  }

  function windowInput(cond, label, optional) {
    // "in the last D days" (last_days) or "between dates" (from / to, inclusive UTC days);
    // optional windows may also be "at any time" (no window).
    var mode = cond.from !== undefined || cond.to !== undefined ? "between" : (cond.last_days !== undefined ? "last" : "any");
    if (!optional && mode === "any") { mode = "last"; }
    var choice = el("select", { "aria-label": label + " window" });
    var modes = [["last", "in the last (days)"], ["between", "between dates"]];
    if (optional) { modes.push(["any", "at any time"]); }
    modes.forEach(function (m) { choice.appendChild(el("option", { value: m[0], text: m[1] })); });
    choice.value = mode;
    choice.addEventListener("change", function () {
      delete cond.last_days; delete cond.from; delete cond.to;
      if (choice.value === "last") { cond.last_days = 30; }
      if (choice.value === "between") { cond.from = isoDay(30); cond.to = isoDay(0); }
      changed(true);
    });
    var parts = [el("span", { text: F.window.label }), choice];
    if (mode === "last") {
      var days = el("input", { type: "number", min: "1", step: "1", "aria-label": label + " in the last (days)" });
      days.value = cond.last_days === undefined ? "" : cond.last_days;
      days.addEventListener("input", function () {
        if (days.value === "") { delete cond.last_days; } else { cond.last_days = Number(days.value); }
        changed(false);
      });
      parts.push(days);
    } else if (mode === "between") {
      ["from", "to"].forEach(function (key) {
        var input = el("input", { type: "date", "aria-label": label + " " + key + " date" });
        input.value = cond[key] || "";
        input.addEventListener("input", function () {
          if (input.value) { cond[key] = input.value; } else { delete cond[key]; }
          changed(false);
        });
        if (key === "to") { parts.push(el("span", { text: "and" })); }
        parts.push(input);
      });
      parts.push(el("span", { class: "muted", text: "(whole days, UTC)" }));
    }
    return el("div", { class: "rb-field rb-window" }, parts);
  }

  function fieldInput(cond, name, label, path) {
    var spec = F[name];
    var key = spec.key || name;
    var input;
    if (spec.type === "properties") { return propertiesInput(cond, label, path); }
    if (spec.type === "window") { return windowInput(cond, label, !!spec.optional); }
    if (spec.type === "checkbox") {
      input = el("input", { type: "checkbox", "aria-label": label + " " + spec.label });
      input.checked = !!cond[key];
      input.addEventListener("change", function () {
        if (input.checked) { cond[key] = true; } else { delete cond[key]; }
        changed(false);
      });
      return el("label", { class: "rb-field" }, [input, el("span", { text: " " + spec.label })]);
    }
    if (spec.type === "variant") {
      spec = { label: spec.label, type: "select", options: [""].concat(data.experiments[cond.experiment] || []) };
    }
    if (spec.type === "select" || spec.type === "segment") {
      input = el("select", { "aria-label": label + " " + spec.label });
      var options = spec.type === "segment"
        ? data.segments.map(function (s) { return [s.id, s.name]; })
        : spec.options.map(function (o) { return [o, o === "" ? "—" : o.replace(/_/g, " ")]; });
      options.forEach(function (o) { input.appendChild(el("option", { value: o[0], text: o[1] })); });
    } else {
      input = el("input", { type: spec.type, "aria-label": label + " " + spec.label, step: "any" });
    }
    var current = cond[key];
    input.value = current === undefined || current === null ? "" : (Array.isArray(current) ? current.join(",") : current);
    input.addEventListener("input", function () {
      var v = input.value;
      if (spec.type === "number" || spec.type === "segment") { v = v === "" ? undefined : Number(v); }
      else if (name === "value") { v = traitValue(cond.op, v); }
      else if (v === "") { v = undefined; }
      if (name === "experiment") { delete cond.variant; }
      if (name === "metric" && v !== "watch_time") { delete cond.property; }
      if (name === "group" && v) { delete cond.score; delete cond.min; delete cond.max; }
      if (name === "score" && v) { delete cond.group; }
      if (name === "event" && v) { delete cond.name; }
      if (name === "name" && v) { delete cond.event; }
      if (v === undefined) { delete cond[key]; } else { cond[key] = v; }
      changed(["event", "name", "trait_op", "experiment", "group", "score", "metric"].indexOf(name) >= 0);
    });
    return el("label", { class: "rb-field" }, [el("span", { text: spec.label }), input]);
  }

  function renderCondition(cond, parent, index, label, path) {
    var row = el("div", { class: "rb-condition", "data-path": path });
    var kind = el("select", { "aria-label": label + " kind" });
    Object.keys(KINDS).forEach(function (k) { kind.appendChild(el("option", { value: k, text: k.replace(/_/g, " ") })); });
    kind.value = cond.kind;
    kind.addEventListener("change", function () {
      parent.conditions[index] = Object.assign({ kind: kind.value }, KINDS[kind.value].defaults);
      changed(true);
    });
    row.appendChild(kind);
    (KINDS[cond.kind] || { fields: [] }).fields.forEach(function (name) {
      if (F[name].when && !F[name].when(cond)) { return; }
      row.appendChild(fieldInput(cond, name, label, path));
    });
    var remove = el("button", { type: "button", class: "btn small", text: "Remove", "aria-label": "Remove " + label });
    remove.addEventListener("click", function () { parent.conditions.splice(index, 1); changed(true); });
    row.appendChild(remove);
    return row;
  }

  function renderGroup(group, parent, index, label, path) {
    var box = el("fieldset", { class: "rb-group", "data-path": path });
    var head = el("div", { class: "rb-group-head" });
    var op = el("select", { "aria-label": label + " match" });
    [["and", "all of (AND)"], ["or", "any of (OR)"]].forEach(function (o) { op.appendChild(el("option", { value: o[0], text: o[1] })); });
    op.value = group.op || "and";
    op.addEventListener("change", function () { group.op = op.value; changed(false); });
    var not = el("input", { type: "checkbox", "aria-label": label + " NOT" });
    not.checked = !!group.not;
    not.addEventListener("change", function () { group.not = not.checked; changed(false); });
    head.appendChild(el("legend", { text: label === "Rule" ? "People matching" : "Group" }));
    head.appendChild(op);
    head.appendChild(el("label", { class: "rb-not" }, [not, el("span", { text: " NOT" })]));
    if (parent) {
      var remove = el("button", { type: "button", class: "btn small", text: "Remove group" });
      remove.addEventListener("click", function () { parent.conditions.splice(index, 1); changed(true); });
      head.appendChild(remove);
    }
    box.appendChild(head);
    group.conditions.forEach(function (cond, n) {
      var childLabel = (label === "Rule" ? "Condition " : label + "." ) + (n + 1);
      var childPath = path + ".conditions[" + n + "]";
      box.appendChild(cond.conditions ? renderGroup(cond, group, n, childLabel, childPath)
        : renderCondition(cond, group, n, childLabel, childPath));
    });
    var add = el("button", { type: "button", class: "btn small", text: "Add condition" });
    add.addEventListener("click", function () {
      group.conditions.push(Object.assign({ kind: "performed" }, KINDS.performed.defaults));
      changed(true);
    });
    var addGroup = el("button", { type: "button", class: "btn small", text: "Add group" });
    addGroup.addEventListener("click", function () {
      group.conditions.push({ op: "or", not: false, conditions: [Object.assign({ kind: "performed" }, KINDS.performed.defaults)] });
      changed(true);
    });
    box.appendChild(el("div", { class: "rb-actions" }, [add, addGroup]));
    return box;
  }

  function render() {
    root.replaceChildren(renderGroup(rule.root, null, 0, "Rule", "root"));
  }

  var timer = null;
  var sequence = 0;
  function estimate() {
    if (!rule.root.conditions.length) { output.textContent = "—"; errorBox.textContent = ""; return; }
    var mine = ++sequence;
    output.textContent = "…";
    fetch(estimateUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ rule: rule }),
      credentials: "same-origin"
    }).then(function (r) { return r.json(); }).then(function (body) {
      if (mine !== sequence) { return; }
      markInvalid(body.field);
      if (body.error) { output.textContent = "—"; errorBox.textContent = describeError(body.field, body.error); }
      else { output.textContent = body.size.toLocaleString(); errorBox.textContent = ""; }
    });
  }

  // "root.conditions[0].properties[1].property: is required." reads as
  // "Condition 1, property filter 2, property: is required." (the labels the builder shows).
  function describeError(path, error) {
    if (!path || error.indexOf(path + ": ") !== 0) { return error; }
    var message = error.slice(path.length + 2);
    var parts = [];
    var condition = [];
    path.split(".").slice(1).forEach(function (token) {
      var m = /^(\w+)\[(\d+)\]$/.exec(token);
      if (m && m[1] === "conditions") { condition.push(Number(m[2]) + 1); return; }
      if (condition.length) { parts.push("Condition " + condition.join(".")); condition = []; }
      if (m && m[1] === "properties") { parts.push("property filter " + (Number(m[2]) + 1)); }
      else { parts.push(token.replace(/_/g, " ")); }
    });
    if (condition.length) { parts.push("Condition " + condition.join(".")); }
    return (parts.length ? parts.join(", ") : "Rule") + ": " + message;
  }

  function markInvalid(path) {
    // Outline the innermost part of the builder that the error names.
    var best = null;
    root.querySelectorAll("[data-path]").forEach(function (node) {
      node.classList.remove("rb-invalid");
      node.removeAttribute("aria-invalid");
      var p = node.getAttribute("data-path");
      if (path && (path === p || path.indexOf(p + ".") === 0) && (!best || p.length > best.getAttribute("data-path").length)) {
        best = node;
      }
    });
    if (best && best !== root.firstChild) { best.classList.add("rb-invalid"); best.setAttribute("aria-invalid", "true"); }
  }

  function changed(rerender) {
    hidden.value = JSON.stringify(rule);
    if (rerender) { render(); }
    clearTimeout(timer);
    timer = setTimeout(estimate, 400);
  }

  var kindSelect = document.getElementById("id_kind");
  function toggleKind() {
    var staticKind = kindSelect && kindSelect.value === "static";
    document.getElementById("rule-box").hidden = staticKind;
    document.getElementById("upload-box").hidden = !staticKind;
  }
  if (kindSelect) { kindSelect.addEventListener("change", toggleKind); toggleKind(); }

  hidden.value = JSON.stringify(rule);
  render();
  estimate();
})();
