// Behaviour every page shares, kept out of the templates: the Content-Security-Policy allows no inline
// handlers (onclick=, onchange=). Delegated from the document, so content htmx swaps in works too.
(function () {
  "use strict";

  // <select data-autosubmit>: choosing an option submits its form (the month menu).
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches && target.matches("select[data-autosubmit]") && target.form) target.form.requestSubmit();
  });

  // A box that scrolls sideways (.table-wrap, .chart-scroll) takes keyboard focus, so it can be scrolled with the
  // arrow keys (WCAG 2.1.1; axe-core's scrollable-region-focusable). Only boxes that do scroll: others would be
  // empty tab stops. Checked on load, after htmx swaps and when the window changes size.
  function focusScrollers() {
    document.querySelectorAll(".table-wrap, .chart-scroll").forEach(function (box) {
      if (box.scrollWidth > box.clientWidth + 1) {
        if (!box.hasAttribute("tabindex")) box.setAttribute("tabindex", "0");
      } else if (box.getAttribute("tabindex") === "0" && !box.hasAttribute("data-keep-tabindex")) {
        box.removeAttribute("tabindex");
      }
    });
  }
  document.addEventListener("DOMContentLoaded", focusScrollers);
  document.addEventListener("htmx:afterSettle", focusScrollers);
  window.addEventListener("resize", focusScrollers);

  // <button data-print>: opens the browser's print dialog (the invoice).
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-print]");
    if (button) window.print();
  });
})();
