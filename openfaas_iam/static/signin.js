document.querySelectorAll('[data-copy]').forEach(function (button) {
  button.addEventListener('click', function () {
    var field = document.getElementById(button.getAttribute('data-copy'));
    var done = function () { var label = button.textContent; button.textContent = 'Copied'; setTimeout(function () { button.textContent = label; }, 1500); };
    if (navigator.clipboard) { navigator.clipboard.writeText(field.value).then(done, function () { field.select(); document.execCommand('copy'); done(); }); }
    else { field.select(); document.execCommand('copy'); done(); }
  });
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
