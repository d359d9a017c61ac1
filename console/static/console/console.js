// The console's shared behaviour. No inline scripts anywhere (the Content-Security-Policy forbids them):
// pages mark elements with data- attributes and this file, or a page's own file, wires them up.
(function () {
  "use strict";

  // Report the agent's time zone, so the server renders times in it (console/middleware.py).
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && document.cookie.indexOf("console_tz=" + encodeURIComponent(zone)) === -1) {
      document.cookie = "console_tz=" + encodeURIComponent(zone) + "; path=/; max-age=31536000; samesite=lax";
    }
  } catch (e) { /* an old browser: the server's zone is used */ }

  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el instanceof HTMLSelectElement && el.hasAttribute("data-autosubmit") && el.form) {
      el.form.requestSubmit ? el.form.requestSubmit() : el.form.submit();
    }
  });

  // A proxied avatar that cannot be shown (404) is removed, uncovering the initials under it.
  document.addEventListener("error", function (event) {
    var el = event.target;
    if (el instanceof HTMLImageElement && el.hasAttribute("data-avatar")) { el.remove(); }
  }, true);

  // A refused action answers 400 or 409 with its form and the message: show it on every page (htmx would
  // skip a 4xx answer). Other errors keep htmx's default: nothing is swapped.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr && event.detail.xhr.status;
    if (status === 400 || status === 409) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // Buttons and forms that ask before they act: data-confirm="question".
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  }, true);
})();
