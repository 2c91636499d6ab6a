// Behaviour every page shares, kept out of the templates: the Content-Security-Policy allows no inline
// handlers (onclick=, onchange=). Delegated from the document, so content htmx swaps in works too.
(function () {
  "use strict";

  // <select data-autosubmit>: choosing an option submits its form (the month menu).
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches && target.matches("select[data-autosubmit]") && target.form) target.form.requestSubmit();
  });

  // A box that scrolls sideways (.table-wrap, .chart-scroll, a code example) takes keyboard focus, so it can be
  // scrolled with the arrow keys (WCAG 2.1.1; axe-core's scrollable-region-focusable). Only boxes that do
  // scroll: others would be empty tab stops. Checked on load, after htmx swaps and when the window resizes.
  function focusScrollers() {
    document.querySelectorAll(".table-wrap, .chart-scroll, pre[data-example]").forEach(function (box) {
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

  // <button data-copy="#id">: copies the text of the element #id (a secret shown once, an invite link, an
  // example) to the clipboard and says so on the button. The Clipboard API needs a secure context (HTTPS or
  // localhost); elsewhere the text is selected and copied the old way.
  function copied(button, ok) {
    var label = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", label);
    button.textContent = ok ? "Copied" : "Select and copy";
    window.setTimeout(function () { button.textContent = label; }, 2000);
  }
  function copyBySelection(source) {
    var range = document.createRange();
    range.selectNodeContents(source);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    try { return document.execCommand("copy"); } catch (e) { return false; }
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.textContent.trim();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { copied(button, true); },
        function () { copied(button, copyBySelection(source)); });
    } else {
      copied(button, copyBySelection(source));
    }
  });

  // <button data-print>: opens the browser's print dialog (the invoice).
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-print]");
    if (button) window.print();
  });
})();
