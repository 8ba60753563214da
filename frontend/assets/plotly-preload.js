/* Start loading plotly.js as soon as the page does, not when the first graph appears.
 *
 * dcc.Graph loads plotly.min.js lazily, after the first callback has put a graph on the page;
 * on a slow machine compiling it is then the longest step before anything is drawn. This
 * script (run with Dash's other assets, before the renderer starts) fetches the same URL the
 * Graph would, and meanwhile sets window.Plotly to a promise of it: dcc.Graph resolves
 * `window.Plotly || load()`, so it waits for this copy instead of loading a second one.
 * plotly.min.js replaces window.Plotly with the library itself when it runs. */
(function () {
  if (window.Plotly) { return; }
  var node = document.getElementById('_dash-config');
  if (!node) { return; }
  var config;
  try { config = JSON.parse(node.textContent); } catch (e) { return; }
  var url = config.serve_locally
    ? (config.requests_pathname_prefix || '/') +
      '_dash-component-suites/plotly/package_data/plotly.min.js'
    : config.plotlyjs_url;
  if (!url) { return; }

  function load(attempt) {
    return new Promise(function (resolve, reject) {
      var script = document.createElement('script');
      script.src = url;
      script.async = true;
      script.onload = function () { resolve(window.Plotly); };
      script.onerror = function (error) {
        if (attempt < 2) { resolve(load(attempt + 1)); } else { reject(error); }
      };
      document.head.appendChild(script);
    });
  }
  window.Plotly = load(1);
})();
