"""Residuals, off-block ratio, spectra, overlaps and the K-FAC error decomposition."""

from curvscope.diagnostics.metrics import (
    condition_number,
    eigenbasis_overlap,
    eigenvalue_overlap,
    kfac_error_split,
    off_block_ratio,
    relative_residual,
    spectrum_summary,
    swap_tests,
)

__all__ = [
    "condition_number",
    "eigenbasis_overlap",
    "eigenvalue_overlap",
    "kfac_error_split",
    "off_block_ratio",
    "relative_residual",
    "spectrum_summary",
    "swap_tests",
]
