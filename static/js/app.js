// Postino: small behaviour that htmx attributes do not cover.
document.addEventListener("change", function (event) {
  // A <select data-autosubmit> submits its form (the language picker).
  var el = event.target;
  if (el.matches && el.matches("select[data-autosubmit]")) {
    el.form.submit();
  }
});
