'use strict';
// plotly.js with the trace types the dashboard draws (frontend/figures/study.py TRACE_TYPES):
// scatter (part of plotly's core), bar and heatmap.
var Plotly = require('plotly.js/lib/core');

Plotly.register([
    require('plotly.js/lib/bar'),
    require('plotly.js/lib/heatmap'),
]);

module.exports = Plotly;
