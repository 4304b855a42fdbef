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
  document.addEventListener("keydown", function (event) {
    var open = document.querySelector(".evidence:target");
    if (event.key === "Escape" && open) {
      var close = open.querySelector("a.close");
      if (close) { close.click(); }
    }
  });
}());
