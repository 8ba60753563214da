// Builds ../assets/vendor/plotly-curvscope.min.js from entry.js with esbuild, the way
// plotly.js builds its own dist bundles (esbuild-config.js in its package: iife, global
// `Plotly`, `global` → window), minified. Run: npm install && npm run build
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';

const plotly = JSON.parse(readFileSync('node_modules/plotly.js/package.json', 'utf8'));
const traces = ['bar', 'heatmap', 'scatter'];
const banner = `/**
* plotly.js v${plotly.version} (${plotly.license} licence, https://github.com/plotly/plotly.js),
* a custom bundle for curvscope's dashboard. traces: ${traces.join(', ')}
* Built by frontend/plotly_bundle/build.mjs (esbuild).
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
