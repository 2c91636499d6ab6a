// Behaviour every page shares, kept out of the templates: the Content-Security-Policy allows no inline
// handlers (onclick=, onchange=). Delegated from the document, so content htmx swaps in works too.
(function () {
  "use strict";

  // <select data-autosubmit>: choosing an option submits its form (the month menu).
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches && target.matches("select[data-autosubmit]") && target.form) target.form.requestSubmit();
  });

  // <button data-print>: opens the browser's print dialog (the invoice).
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-print]");
    if (button) window.print();
  });
})();
