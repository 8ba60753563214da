"""Small layout pieces shared by the pages (no callbacks, no I/O)."""

from frontend.components.common import (
    alert,
    api_error,
    card,
    chip,
    empty_figure,
    error_figure,
    graph,
    kv_table,
    navbar,
    progress_bar,
    section,
)

__all__ = [
    "alert",
    "api_error",
    "card",
    "chip",
    "empty_figure",
    "error_figure",
    "graph",
    "kv_table",
    "navbar",
    "progress_bar",
    "section",
]
