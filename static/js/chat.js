// Chat page behaviour on top of htmx and its SSE extension: Enter sends, refusals (422) are shown, the view
// follows a growing answer. No framework, no globals beyond one IIFE.
(function () {
  "use strict";

  // Refused actions answer 422 with a message for people; htmx must swap it (it skips 4xx by default).
  htmx.config.responseHandling = [{ code: "204", swap: false }, { code: "422", swap: true, error: false }]
    .concat(htmx.config.responseHandling);

  function messages() { return document.getElementById("messages"); }

  function nearBottom() {
    var doc = document.scrollingElement || document.documentElement;
    return doc.scrollHeight - (doc.scrollTop + window.innerHeight) < 160;
  }

  function scrollToEnd() {
    var doc = document.scrollingElement || document.documentElement;
    doc.scrollTop = doc.scrollHeight;
  }

  // Enter sends, Shift+Enter inserts a newline; an IME composition is never interrupted.
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    if (!target.matches || !target.matches("#composer textarea")) return;
    event.preventDefault();
    if (target.value.trim() === "") return;
    target.form.requestSubmit();
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (form && form.id === "composer" && event.detail.successful && event.detail.xhr.status === 200) {
      form.reset();
      var error = document.getElementById("composer-error");
      if (error) error.textContent = "";
      var empty = document.getElementById("chat-empty");
      if (empty) empty.remove();
      scrollToEnd();
    }
  });

  var follow = true;
  document.addEventListener("htmx:sseBeforeMessage", function () { follow = nearBottom(); });
  document.addEventListener("htmx:sseMessage", function () { if (follow) scrollToEnd(); });

  document.addEventListener("DOMContentLoaded", function () {
    if (messages()) scrollToEnd();
  });
})();
