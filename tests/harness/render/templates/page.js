// The page works without this script (the drill-down is CSS :target); the script adds
// what CSS cannot: a cause lights the cells it explains, Escape closes a cell's evidence.
(function () {
  "use strict";
  function cellsOf(cause) {
    return (cause.getAttribute("data-cells") || "").split(" ").filter(Boolean).map(function (id) {
      return document.querySelector('td.cell[data-cell="' + id + '"]');
    }).filter(Boolean);
  }
  function light(cause, on) {
    cause.classList.toggle("lit", on);
    cellsOf(cause).forEach(function (cell) { cell.classList.toggle("lit", on); });
  }
  document.querySelectorAll("ol.causes li[data-cells]").forEach(function (cause) {
    ["mouseenter", "focus"].forEach(function (e) { cause.addEventListener(e, function () { light(cause, true); }); });
    ["mouseleave", "blur"].forEach(function (e) { cause.addEventListener(e, function () { light(cause, false); }); });
  });
  // "Will my versions work?": the picks select one of the grids the report computed
  // (atlas-data maps the picks to a grid's id) and name the runs that share them.
  var atlasData = document.getElementById("atlas-data");
  if (atlasData) { versions(JSON.parse(atlasData.textContent)); }
  function versions(atlas) {
    var form = document.getElementById("picks");
    var ran = atlas.stacks;  // the runs that left results
    function picks() {
      var out = {};
      form.querySelectorAll("select[data-axis]").forEach(function (s) { out[s.getAttribute("data-axis")] = s.value; });
      return out;
    }
    function runLink(stack) {
      var a = document.createElement(stack.href ? "a" : "span");
      a.className = "run";
      a.textContent = stack.id;
      if (stack.href) { a.setAttribute("href", stack.href); }
      return a;
    }
    function coverage(line, layer, p) {
      var near = ran.map(function (s) {
        return {stack: s, differs: layer.axes.filter(function (a) { return s.picks[a] !== p[a]; })};
      }).sort(function (x, y) { return x.differs.length - y.differs.length; });
      var observed = near.filter(function (n) { return n.differs.length === 0; });
      line.textContent = "";
      var verdict = document.createElement("b");
      verdict.className = observed.length ? "observed" : "not-observed";
      verdict.textContent = observed.length ? "observed" : "predicted, not observed";
      line.appendChild(verdict);
      var shown = observed.length ? observed : near.slice(0, 3);
      line.appendChild(document.createTextNode(shown.length ? (observed.length ? " in " : "; nearest runs: ") : "; no run yet"));
      shown.forEach(function (n, i) {
        if (i) { line.appendChild(document.createTextNode(", ")); }
        line.appendChild(runLink(n.stack));
        if (n.differs.length) {
          line.appendChild(document.createTextNode(" (" + n.differs.map(function (a) { return a + " " + (n.stack.picks[a] || "none"); }).join(", ") + ")"));
        }
      });
    }
    function installable(p) {
      var note = document.getElementById("picks-note");
      var refused = atlas.not_installable.filter(function (n) {
        return n.pair.every(function (axisValue) { return p[axisValue[0]] === axisValue[1]; });
      });
      note.textContent = refused.map(function (n) { return "Not installable together: " + n.reason + "."; }).join(" ");
      note.hidden = !refused.length;
    }
    function show() {
      var p = picks();
      installable(p);
      atlas.layers.forEach(function (layer) {
        var id = layer.keys[layer.key_axes.map(function (a) { return a + "=" + p[a]; }).join("|")];
        document.querySelectorAll('figure.prediction[data-layer="' + layer.layer + '"]').forEach(function (f) { f.hidden = f.id !== id; });
        coverage(document.querySelector('p.coverage[data-layer="' + layer.layer + '"]'), layer, p);
      });
    }
    form.addEventListener("change", show);
    show();
  }
  document.addEventListener("keydown", function (event) {
    var open = document.querySelector(".evidence:target");
    if (event.key === "Escape" && open) {
      var close = open.querySelector("a.close");
      if (close) { close.click(); }
    }
  });
}());
