/* Accessibility fixes the components cannot be told to make (issue 12):
 *  - every input, select and textarea has an accessible name: Dash 4's dropdowns and inputs
 *    render their own <input> without one, so each takes the text of its control's label
 *    (the .control or .field it sits in), else its placeholder or name;
 *  - plotly's toolbar buttons are left out of the Tab order (tabindex=-1): ten figures of
 *    five buttons each came before the page's own controls; they stay usable by mouse, and
 *    every figure can be downloaded from its toolbar.
 * Runs on every change of the page (debounced to one animation frame). */
(function () {
  function hasName(el) {
    if (el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')) { return true; }
    if (el.closest('label')) { return true; }
    if (el.id) {
      try {
        if (document.querySelector('label[for="' + CSS.escape(el.id) + '"]')) { return true; }
      } catch (e) { /* an id CSS cannot escape: fall through */ }
    }
    return false;
  }
  function labelText(el) {
    var box = el.closest('.control, .field, .sweep-row, .token-box');
    var label = box && box.querySelector('label, .field-label, summary, .control-label');
    var text = label ? (label.childNodes[0] && label.childNodes[0].textContent || label.textContent) : '';
    text = (text || '').trim();
    return text || el.getAttribute('placeholder') || el.getAttribute('name') || '';
  }
  function fix() {
    scheduled = false;
    var fields = document.querySelectorAll('input:not([type=hidden]), select, textarea');
    for (var i = 0; i < fields.length; i++) {
      var el = fields[i];
      if (!hasName(el)) {
        var text = labelText(el);
        if (text) { el.setAttribute('aria-label', text); }
      }
    }
    var buttons = document.querySelectorAll('.modebar-btn:not([tabindex])');
    for (var j = 0; j < buttons.length; j++) { buttons[j].setAttribute('tabindex', '-1'); }
  }
  var scheduled = false;
  function schedule() {
    if (!scheduled) { scheduled = true; window.requestAnimationFrame(fix); }
  }
  function start() {
    new MutationObserver(schedule).observe(document.body, {childList: true, subtree: true});
    schedule();
  }
  if (document.body) { start(); } else { document.addEventListener('DOMContentLoaded', start); }
})();
