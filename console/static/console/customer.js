// The customer profile's behaviour (no inline scripts: the Content-Security-Policy forbids them).
(function () {
  "use strict";

  // Tell screen readers when older timeline messages were loaded by infinite scroll.
  document.addEventListener("htmx:afterSettle", function (event) {
    var list = document.querySelector("[data-timeline]");
    var status = document.querySelector("[data-timeline-status]");
    if (!list || !status || !list.contains(event.target)) { return; }
    var count = list.querySelectorAll("[data-testid='timeline-item']").length;
    status.textContent = (status.getAttribute("data-loaded-text") || "") + " " + count;
  });

  // The erase form's button stays disabled until the confirmation is typed (the server checks it again).
  function wireErase(form) {
    var input = form.querySelector("[data-erase-confirm]");
    var button = form.querySelector("[data-erase-submit]");
    if (!input || !button) { return; }
    var expected = (input.getAttribute("data-expected") || "").split("|");
    function update() { button.disabled = expected.indexOf(input.value.trim()) === -1; }
    input.addEventListener("input", update);
    update();
  }
  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-erase-form]"), wireErase);
  });
})();
