"""Pure figure builders: a study's results (dict) and arrays (name → numpy array) in, a plotly
Figure out. No I/O, no Dash; the pages call these and the tests call them directly."""

from frontend.figures.compare import compare_figure, diff_spec
from frontend.figures.study import (
    METHOD_COLORS,
    alignment_figure,
    decomposition_figure,
    examples_figure,
    examples_grid,
    groundtruth_scatter,
    heatmap_figure,
    lds_figure,
    spectra_figure,
)

__all__ = [
    "METHOD_COLORS",
    "alignment_figure",
    "compare_figure",
    "decomposition_figure",
    "diff_spec",
    "examples_figure",
    "examples_grid",
    "groundtruth_scatter",
    "heatmap_figure",
    "lds_figure",
    "spectra_figure",
]
