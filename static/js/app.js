// Postino: small behaviour that htmx attributes do not cover.
document.addEventListener("change", function (event) {
  // A <select data-autosubmit> submits its form (the language picker).
  var el = event.target;
  if (el.matches && el.matches("select[data-autosubmit]")) {
    el.form.submit();
  }
});

// A form answered 422 carries its errors beside the fields, and a 503 (the database is not
// answering) says so where the answer was expected: let htmx swap them like a 200.
document.addEventListener("htmx:beforeSwap", function (event) {
  if (event.detail.xhr && (event.detail.xhr.status === 422 || event.detail.xhr.status === 503)) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});

// Templates editor: the preview's desktop/mobile width toggle (kept across preview swaps).
document.addEventListener("click", function (event) {
  var button = event.target.closest && event.target.closest("[data-preview-width]");
  if (!button) { return; }
  var pane = document.getElementById(button.getAttribute("aria-controls"));
  if (!pane) { return; }
  var mobile = button.getAttribute("data-preview-width") === "mobile";
  pane.classList.toggle("mobile", mobile);
  pane.querySelectorAll("[data-preview-width]").forEach(function (other) {
    var pressed = other === button;
    other.setAttribute("aria-pressed", pressed ? "true" : "false");
    other.classList.toggle("secondary", !pressed);
    other.classList.toggle("outline", !pressed);
  });
});

// A form that asks for confirmation checks its fields first, so the user hears what is
// missing before the dialog rather than after confirming it (htmx confirms, then validates;
// these forms are `novalidate` so plain posts still get the server's errors). A field's
// data-invalid-message replaces the browser's generic wording.
document.addEventListener("htmx:confirm", function (event) {
  var form = event.detail.elt;
  if (!form || form.tagName !== "FORM" || !form.hasAttribute("hx-confirm")) { return; }
  form.querySelectorAll("[data-invalid-message]").forEach(function (field) {
    field.setCustomValidity("");
    if (!field.checkValidity()) {
      field.setCustomValidity(field.getAttribute("data-invalid-message"));
    }
  });
  if (!form.checkValidity()) {
    event.preventDefault();  // no dialog, no request
    form.reportValidity();
  }
});

document.addEventListener("input", function (event) {
  var field = event.target;
  if (field.matches && field.matches("[data-invalid-message]")) { field.setCustomValidity(""); }
});

// Copy buttons (DKIM records): <button data-copy="ID" data-copied="Copied"> copies the text of
// the element with that id; the clipboard API needs a secure context, else select and copy.
document.addEventListener("click", function (event) {
  var button = event.target.closest && event.target.closest("[data-copy]");
  if (!button) { return; }
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source) { return; }
  var text = source.textContent.trim();
  var done = function () {
    var label = button.getAttribute("data-copied");
    if (!label) { return; }
    var before = button.textContent;
    button.textContent = label;
    button.setAttribute("data-copy-state", "copied");
    setTimeout(function () {
      button.textContent = before;
      button.removeAttribute("data-copy-state");
    }, 1500);
  };
  var fallback = function () {
    var range = document.createRange();
    range.selectNodeContents(source);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    try {
      if (document.execCommand("copy")) { done(); }
    } catch (e) { /* the text stays selected for Ctrl+C */ }
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, fallback);
  } else {
    fallback();
  }
});
