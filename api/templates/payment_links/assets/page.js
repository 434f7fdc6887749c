// The payment page works without this file; with it, typing mistakes are shown next to their field
// before the form is sent, the card number is grouped as it is typed, and the button cannot be
// pressed twice. It makes no request of its own and reads no card data anywhere but the form.
(function () {
  "use strict";
  var form = document.getElementById("card-form");
  var summary = document.getElementById("error-summary") || document.getElementById("decline");
  if (summary) { summary.focus(); }
  if (!form) { return; }

  function luhn(digits) {
    var sum = 0, double = false;
    for (var i = digits.length - 1; i >= 0; i--) {
      var d = digits.charCodeAt(i) - 48;
      if (double) { d *= 2; if (d > 9) { d -= 9; } }
      sum += d; double = !double;
    }
    return sum % 10 === 0;
  }

  function show(name, message) {
    var input = document.getElementById(name);
    var error = document.getElementById(name + "-error");
    if (!input || !error) { return; }
    error.textContent = message || "";
    input.parentNode.classList.toggle("invalid", !!message);
    if (message) { input.setAttribute("aria-invalid", "true"); } else { input.removeAttribute("aria-invalid"); }
  }

  function problems() {
    var d = form.dataset, found = [];
    var number = form.number.value.replace(/[\s-]/g, "");
    var numberProblem = !number ? d.numberMissing : (!/^\d{12,19}$/.test(number) || !luhn(number)) ? d.numberInvalid : "";
    found.push(["number", numberProblem]);
    var expiry = form.expiry.value.trim();
    var match = /^(\d{1,2})\s*[\/\-. ]?\s*(\d{2}|\d{4})$/.exec(expiry);
    var expiryProblem = !expiry ? d.expiryMissing : (!match || +match[1] < 1 || +match[1] > 12) ? d.expiryInvalid : "";
    found.push(["expiry", expiryProblem]);
    found.push(["cvv", /^\d{3,4}$/.test(form.cvv.value.trim()) ? "" : d.cvvInvalid]);
    found.push(["holder_name", form.holder_name.value.trim() ? "" : d.nameMissing]);
    if (form.email) {
      var email = form.email.value.trim();
      found.push(["email", !email ? d.emailMissing : /^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$/.test(email) ? "" : d.emailInvalid]);
    }
    return found;
  }

  form.number.addEventListener("input", function () {
    var digits = form.number.value.replace(/\D/g, "").slice(0, 19);
    var grouped = digits.replace(/(\d{4})(?=\d)/g, "$1 ");
    if (grouped !== form.number.value) { form.number.value = grouped; }
  });

  form.addEventListener("submit", function (event) {
    var first = null;
    problems().forEach(function (entry) {
      show(entry[0], entry[1]);
      if (entry[1] && !first) { first = entry[0]; }
    });
    if (first) {
      event.preventDefault();
      document.getElementById(first).focus();
      return;
    }
    var button = document.getElementById("submit");
    button.disabled = true;
    button.textContent = form.dataset.submitting;
  });
})();
