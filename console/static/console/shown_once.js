// A secret shown once (API key, OAuth client secret): clicking its field selects it. Copy uses the Clipboard
// API where it is allowed (HTTPS or localhost) and falls back to selecting and copying the field elsewhere.
document.querySelectorAll("#shown-once input[readonly]").forEach(function (field) {
  field.addEventListener("click", function () { field.select(); });
});
document.querySelectorAll("#shown-once .copy-secret").forEach(function (button) {
  button.addEventListener("click", function () {
    var field = document.getElementById(button.dataset.target);
    var copied = function () { button.textContent = "Copied"; };
    var fallback = function () { field.select(); if (document.execCommand("copy")) { copied(); } };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(copied, fallback);
    } else {
      fallback();
    }
  });
});
