// Chat page behaviour on top of htmx and its SSE extension: Enter sends, one answer at a time (Send becomes
// Stop while an answer streams), refusals (409, 422) are shown, the view follows a growing answer. No
// framework, no globals beyond one IIFE.
(function () {
  "use strict";

  // Refused actions answer 422 (or 409: an answer is still running) with a message for people; htmx must swap
  // it (it skips 4xx by default).
  htmx.config.responseHandling = [{ code: "204", swap: false }, { code: "409", swap: true, error: false },
    { code: "422", swap: true, error: false }].concat(htmx.config.responseHandling);

  function messages() { return document.getElementById("messages"); }
  function composer() { return document.getElementById("composer"); }

  function nearBottom() {
    var doc = document.scrollingElement || document.documentElement;
    return doc.scrollHeight - (doc.scrollTop + window.innerHeight) < 160;
  }

  function scrollToEnd() {
    var doc = document.scrollingElement || document.documentElement;
    doc.scrollTop = doc.scrollHeight;
  }

  // --- one answer at a time ---

  function liveAnswer() {
    var list = messages();
    return list ? list.querySelector("article.msg-assistant .msg-live") : null;
  }

  // While an answer streams the composer is busy: Send is swapped for Stop, and Enter does not send.
  function syncComposer() {
    var form = composer();
    if (!form) return;
    var busy = !!liveAnswer();
    form.dataset.busy = busy ? "true" : "false";
    var send = document.getElementById("composer-send");
    var stop = document.getElementById("composer-stop");
    if (send) send.hidden = busy;
    if (stop) stop.hidden = !busy;
  }

  document.addEventListener("click", function (event) {
    var stop = event.target.closest && event.target.closest("#composer-stop");
    if (!stop) return;
    var live = liveAnswer();
    var form = live && live.querySelector("form.msg-stop");
    if (form) form.requestSubmit();
  });

  // --- copy: a code block's text, or a message's markdown source ---

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    return new Promise(function (resolve, reject) {  // plain-HTTP deployments: the older selection way
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "copy-buffer";
      document.body.appendChild(area);
      area.select();
      var ok = document.execCommand("copy");
      area.remove();
      if (ok) resolve(); else reject(new Error("copy refused"));
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest(".code-copy, .msg-copy");
    if (!button) return;
    var text = button.classList.contains("code-copy")
      ? button.closest(".code-block").querySelector("pre code").textContent
      : button.dataset.copySource;
    var label = button.textContent;
    copyText(text).then(function () {
      button.textContent = "Copied";
      button.dataset.copied = "true";
      setTimeout(function () { button.textContent = label; delete button.dataset.copied; }, 1500);
    }, function () { button.textContent = "Copy failed"; });
  });

  // --- the conversation list as a drawer on phones ---

  function setDrawer(open) {
    var chat = document.querySelector(".chat");
    if (!chat) return;
    chat.classList.toggle("drawer-open", open);
    var backdrop = chat.querySelector(".drawer-backdrop");
    if (backdrop) backdrop.hidden = !open;
    document.querySelectorAll(".drawer-toggle").forEach(function (b) { b.setAttribute("aria-expanded", String(open)); });
    if (open) {
      var first = document.querySelector("#chat-sidebar a, #chat-sidebar input");
      if (first) first.focus();
    }
  }

  document.addEventListener("click", function (event) {
    if (!event.target.closest) return;
    if (event.target.closest(".drawer-toggle")) {
      setDrawer(!document.querySelector(".chat.drawer-open"));
    } else if (event.target.closest("[data-drawer-close]")) {
      setDrawer(false);
    }
  });

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && document.querySelector(".chat.drawer-open")) {
      setDrawer(false);
      var toggle = document.querySelector(".drawer-toggle");
      if (toggle) toggle.focus();
    }
  });

  // --- the message box grows with its text (up to its CSS max-height), from one line ---

  function autosize(box) {
    box.style.height = "auto";
    box.style.height = box.scrollHeight + 2 + "px";
  }

  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("#composer textarea")) autosize(event.target);
  });

  // Enter sends, Shift+Enter inserts a newline; an IME composition is never interrupted.
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    if (!target.matches || !target.matches("#composer textarea")) return;
    event.preventDefault();
    if (target.value.trim() === "" || target.form.dataset.busy === "true") return;
    target.form.requestSubmit();
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.id === "composer" && form.dataset.busy === "true") event.preventDefault();
  }, true);

  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (form && form.id === "composer" && event.detail.successful && event.detail.xhr.status === 200) {
      form.reset();
      var box = form.querySelector("textarea");
      if (box) box.style.height = "";
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
    var list = messages();
    if (list) {
      new MutationObserver(syncComposer).observe(list, { childList: true, subtree: true });
      scrollToEnd();
    }
    syncComposer();
  });
})();
