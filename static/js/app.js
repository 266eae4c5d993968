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

// The header's Menu button (phones): shows and hides the navigation, says so with
// aria-expanded; Escape closes it and gives the focus back to the button. Without this
// script the button stays hidden and the navigation stays open.
(function () {
  function setOpen(button, open) {
    var menu = document.getElementById(button.getAttribute("aria-controls"));
    button.setAttribute("aria-expanded", open ? "true" : "false");
    if (!menu) { return; }
    menu.classList.toggle("open", open);
    if (!open) {  // a closed menu opens again as it was first shown: the gear menu folded
      menu.querySelectorAll("details[open]").forEach(function (d) { d.removeAttribute("open"); });
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".nav-toggle").forEach(function (button) {
      button.closest("nav").classList.add("js-nav");
      setOpen(button, false);
    });
  });
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest(".nav-toggle");
    if (button) { setOpen(button, button.getAttribute("aria-expanded") !== "true"); }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") { return; }
    document.querySelectorAll(".nav-toggle[aria-expanded=true]").forEach(function (button) {
      var menu = document.getElementById(button.getAttribute("aria-controls"));
      if (menu && menu.contains(document.activeElement)) { button.focus(); }
      setOpen(button, false);
    });
  });
})();

// A table wider than the screen scrolls inside its .table-scroll box, a long raw report
// inside its <pre>: make such a box focusable, so keyboard users can scroll it too (and only
// then: no extra tab stops).
(function () {
  function markScrollable() {
    document.querySelectorAll(".table-scroll, main pre").forEach(function (box) {
      if (box.scrollWidth > box.clientWidth + 1 || box.scrollHeight > box.clientHeight + 1) {
        box.setAttribute("tabindex", "0");
      } else {
        box.removeAttribute("tabindex");
      }
    });
  }
  var pending = false;
  function later() {
    if (pending) { return; }
    pending = true;
    window.requestAnimationFrame(function () { pending = false; markScrollable(); });
  }
  document.addEventListener("DOMContentLoaded", markScrollable);
  document.addEventListener("htmx:afterSettle", later);
  document.addEventListener("toggle", later, true);  // a <details> opened or closed
  window.addEventListener("resize", later);
})();

// An email preview (iframe.preview[data-fit]) is as tall as the email, footer included,
// instead of a fixed box that cuts it off. The frame stays sandboxed without scripts:
// allow-same-origin only lets this script read the height of what it shows.
(function () {
  function fit(frame) {
    var doc;
    try { doc = frame.contentDocument; } catch (e) { return; }
    if (!doc || !doc.documentElement) { return; }
    var scrolled = window.scrollY;
    frame.style.height = "0px";  // measure the content, not the frame's current height
    frame.style.height = Math.max(doc.documentElement.scrollHeight, 80) + "px";
    window.scrollTo(window.scrollX, scrolled);
  }
  function fitAll() {
    document.querySelectorAll("iframe.preview[data-fit]").forEach(function (frame) {
      if (frame.contentDocument && frame.contentDocument.readyState === "complete") {
        fit(frame);
      }
    });
  }
  document.addEventListener("load", function (event) {  // load does not bubble: capture it
    if (event.target.matches && event.target.matches("iframe.preview[data-fit]")) {
      fit(event.target);
    }
  }, true);
  document.addEventListener("DOMContentLoaded", fitAll);
  window.addEventListener("resize", function () { window.requestAnimationFrame(fitAll); });
  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("[data-preview-width]")) {
      window.requestAnimationFrame(fitAll);  // the desktop/mobile toggle changes the width
    }
  });
})();

// Suppressions: a search answer that arrives while a row's Lift form is open (typed before
// the click, answered after) must not redraw that row and lose what was being typed. The
// open row is kept in place through htmx's hx-preserve; when the answer no longer lists that
// entry, the table is left as it is until the form is sent or cancelled.
document.addEventListener("htmx:beforeSwap", function (event) {
  var target = event.detail.target;
  if (!target || target.id !== "suppressions-results" || !event.detail.shouldSwap) { return; }
  var open = target.querySelectorAll("tr.suppression-lift[id]");
  if (!open.length) { return; }
  var answer = document.createElement("template");
  answer.innerHTML = event.detail.serverResponse;
  for (var i = 0; i < open.length; i++) {
    var row = answer.content.getElementById(open[i].id);
    if (!row) {
      event.detail.shouldSwap = false;
      return;
    }
    row.setAttribute("hx-preserve", "true");
  }
  event.detail.serverResponse = answer.innerHTML;
});
