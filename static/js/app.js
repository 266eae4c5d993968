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
