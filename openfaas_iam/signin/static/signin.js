// Copy a token without revealing it: the value is read from the (closed) disclosure's field.
document.querySelectorAll('[data-copy]').forEach(function (button) {
  button.hidden = false;
  button.addEventListener('click', function () {
    var value = document.getElementById(button.getAttribute('data-copy')).value;
    var label = button.textContent;
    var done = function (text) { button.textContent = text; setTimeout(function () { button.textContent = label; }, 1500); };
    var fallback = function () {
      var scratch = document.createElement('textarea');
      scratch.value = value; scratch.setAttribute('readonly', ''); scratch.className = 'offscreen';
      document.body.appendChild(scratch); scratch.select();
      var ok = false; try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
      document.body.removeChild(scratch); done(ok ? 'Copied' : 'Copy failed: use Show');
    };
    if (navigator.clipboard) { navigator.clipboard.writeText(value).then(function () { done('Copied'); }, fallback); }
    else { fallback(); }
  });
});
// The disclosure's label says what pressing it does.
document.querySelectorAll('details.secret').forEach(function (box) {
  var summary = box.querySelector('summary');
  var shown = summary.textContent.replace(/^Show /, 'Hide ');
  var hidden = summary.textContent;
  box.addEventListener('toggle', function () { summary.textContent = box.open ? shown : hidden; });
});
var countdown = document.getElementById('countdown');
if (countdown) {
  var expires = parseInt(countdown.getAttribute('data-expires'), 10);
  var tick = function () {
    var left = Math.max(0, expires - Math.floor(Date.now() / 1000));
    var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
    countdown.textContent = left ? (h ? h + 'h ' : '') + m + 'm ' + (s < 10 ? '0' : '') + s + 's left' : 'expired: sign in again';
  };
  tick(); setInterval(tick, 1000);
}
