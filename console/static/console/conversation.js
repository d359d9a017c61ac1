// The conversation page's behaviour (no inline scripts: the Content-Security-Policy forbids them).
// - the reply composer's live character counter (text + signature, against the platform's limit);
// - canned responses inserted at the cursor (their variables are filled on the server);
// - the "typing" flag the presence heartbeat carries, and a goodbye when the page is left;
// - htmx swaps the answers of refused actions (400, 409) too, so the agent sees the reason.
(function () {
  "use strict";

  // Longer than the 5 s between heartbeats, so that even a short burst of typing is carried by one of them.
  var TYPING_FOR_MS = 6000;
  var typingTimer = null;

  function length(text) { return Array.from(text).length; }  // code points, as the server counts

  function updateCounter() {
    var form = document.getElementById("reply-form");
    var textarea = document.getElementById("reply-text");
    var counter = document.getElementById("reply-counter");
    if (!form || !textarea || !counter) { return; }
    var limit = parseInt(form.getAttribute("data-reply-limit"), 10);
    var text = textarea.value.trim();
    var sign = document.getElementById("reply-sign");
    var signature = document.getElementById("reply-signature");
    var total = length(text);
    if (text && sign && sign.checked && signature && signature.value.trim()) {
      total += 1 + length(signature.value.trim());
    }
    counter.textContent = isNaN(limit) ? String(total) : total + " / " + limit;
    counter.classList.toggle("over-limit", !isNaN(limit) && total > limit);
  }

  function markTyping() {
    var flag = document.getElementById("typing-flag");
    if (!flag) { return; }
    flag.value = "1";
    if (typingTimer) { window.clearTimeout(typingTimer); }
    typingTimer = window.setTimeout(function () { flag.value = "0"; }, TYPING_FOR_MS);
  }

  function insertAtCursor(textarea, text) {
    var start = textarea.selectionStart || 0;
    var end = textarea.selectionEnd || 0;
    var before = textarea.value.slice(0, start);
    var after = textarea.value.slice(end);
    textarea.value = before + text + after;
    var caret = before.length + text.length;
    textarea.focus();
    textarea.setSelectionRange(caret, caret);
  }

  document.addEventListener("input", function (event) {
    var el = event.target;
    if (el.id === "reply-text") { markTyping(); }
    if (el.id === "reply-text" || el.id === "reply-signature") { updateCounter(); }
  });

  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el.id === "reply-sign") { updateCounter(); return; }
    if (el instanceof HTMLSelectElement && el.hasAttribute("data-canned-target")) {
      var option = el.options[el.selectedIndex];
      var textarea = document.getElementById(el.getAttribute("data-canned-target"));
      if (option && option.value && textarea) {
        insertAtCursor(textarea, option.getAttribute("data-text") || "");
        markTyping();
        updateCounter();
      }
      el.selectedIndex = 0;
    }
  });

  // Ctrl+Enter (Cmd+Enter) in the composer sends the reply.
  document.addEventListener("keydown", function (event) {
    if (event.target.id === "reply-text" && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      var form = document.getElementById("reply-form");
      if (form) { event.preventDefault(); form.requestSubmit ? form.requestSubmit() : form.submit(); }
    }
  });

  document.addEventListener("htmx:afterSwap", updateCounter);
  document.addEventListener("DOMContentLoaded", updateCounter);

  // Leaving the page ends this agent's presence at once instead of after the time to live.
  window.addEventListener("pagehide", function () {
    var presence = document.getElementById("presence");
    var url = presence && presence.getAttribute("data-presence-leave");
    var token = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (!url || !token || !navigator.sendBeacon) { return; }
    var data = new FormData();
    data.append("leave", "1");
    data.append("csrfmiddlewaretoken", token.value);
    navigator.sendBeacon(url, data);
  });
})();
