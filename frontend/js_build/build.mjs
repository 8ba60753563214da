// Writes the dashboard's vendored scripts into ../assets/vendor/ (README.md says why):
//   plotly-curvscope.min.js   entry.js bundled with esbuild the way plotly.js builds its own
//                             dist bundles (esbuild-config.js in its package: iife, global
//                             `Plotly`, `global` → window), minified;
//   regenerator-runtime.js    regenerator-runtime's runtime.js as published, with a banner.
// Run: npm install && npm run build
import { build } from 'esbuild';
import { readFileSync, writeFileSync } from 'node:fs';

const plotly = JSON.parse(readFileSync('node_modules/plotly.js/package.json', 'utf8'));
const traces = ['bar', 'heatmap', 'scatter'];
const banner = `/**
* plotly.js v${plotly.version} (${plotly.license} licence, https://github.com/plotly/plotly.js),
* a custom bundle for curvscope's dashboard. traces: ${traces.join(', ')}
* Built by frontend/js_build/build.mjs (esbuild).
*/`;

await build({
    entryPoints: ['entry.js'],
    outfile: '../assets/vendor/plotly-curvscope.min.js',
    format: 'iife',
    globalName: 'Plotly',
    bundle: true,
    minify: true,
    legalComments: 'none',
    // the only stylesheet it imports is maplibre's, for map subplots (not in this bundle)
    loader: { '.css': 'empty' },
    banner: { js: banner },
    define: { global: 'window', 'define.amd': 'false', 'process.env.NODE_DEBUG': 'false' },
    target: 'es2016',
    logLevel: 'warning',
});
console.log(`plotly.js ${plotly.version}: ../assets/vendor/plotly-curvscope.min.js (${traces.join(', ')})`);

const regenerator = JSON.parse(readFileSync('node_modules/regenerator-runtime/package.json', 'utf8'));
writeFileSync('../assets/vendor/regenerator-runtime.js', `/* regenerator-runtime v${regenerator.version} (${regenerator.license} licence, https://github.com/facebook/regenerator):
 * the global regeneratorRuntime that Dash's scripts call, served by curvscope's dashboard
 * instead of Dash's @babel/polyfill (frontend/app.py). Copied by frontend/js_build/build.mjs. */
` + readFileSync('node_modules/regenerator-runtime/runtime.js', 'utf8'));
console.log(`regenerator-runtime ${regenerator.version}: ../assets/vendor/regenerator-runtime.js`);
