/* Load plotly.js (assets/vendor/plotly-curvscope.min.js) without holding up the page.
 *
 * Running plotly.js is one of the largest pieces of work of a page's first load on a slow
 * machine (0.15-0.25 s for this bundle on a 2-core machine; 0.55-0.8 s for the published
 * cartesian one). As an ordinary <script> it would run before Dash's renderer starts, so the
 * renderer's requests (its layout, then the page's content, which the server needs time to
 * build) would wait for it. Instead this script, run with Dash's other assets:
 *   1. starts downloading the bundle at once (<link rel=preload>), beside Dash's scripts;
 *   2. sets window.Plotly to a promise of the library: dcc.Graph resolves
 *      `window.Plotly || load()`, so every graph waits for this copy instead of loading one;
 *   3. runs the bundle when the renderer sends its first callback request (the page's
 *      content), so plotly.js runs while the server answers; or, at the latest, 400 ms
 *      after the page's `load` event. The bundle replaces window.Plotly with the library.
 * The folder vendor/ is left out of Dash's automatic script tags (frontend/app.py). */
(function () {
  if (window.Plotly) { return; }
  var self = document.currentScript;
  var base = self && self.src ? self.src.replace(/plotly-preload\.js.*$/, '') : '/assets/';
  var url = base + 'vendor/plotly-curvscope.min.js';

  var hint = document.createElement('link');
  hint.rel = 'preload';
  hint.as = 'script';
  hint.href = url;
  document.head.appendChild(hint);

  var resolve, reject, started = false;
  window.Plotly = new Promise(function (ok, fail) { resolve = ok; reject = fail; });

  function inject(attempt) {
    var script = document.createElement('script');
    script.src = url;
    script.async = true;
    script.onload = function () { resolve(window.Plotly); };
    script.onerror = function (error) {
      if (attempt < 2) { inject(attempt + 1); } else { reject(error); }
    };
    document.head.appendChild(script);
  }
  function start() {
    if (started) { return; }
    started = true;
    inject(1);
  }

  var fetch = window.fetch;
  if (fetch) {
    window.fetch = function (input) {
      var answer = fetch.apply(this, arguments);
      if (!started && String(input && input.url || input).indexOf('_dash-update-component') >= 0) {
        window.fetch = fetch;
        setTimeout(start, 0);
      }
      return answer;
    };
  }
  window.addEventListener('load', function () { setTimeout(start, 400); });
})();
