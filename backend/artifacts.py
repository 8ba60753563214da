"""Where a study's files live, and the readers the API serves them with.

``<data_dir>/studies/<id>/results.json`` and ``arrays.npz`` are written by the worker through
``curvscope.study.run_study`` (atomically); nothing here writes them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from backend.core.config import Settings


def study_dir(settings: Settings, study_id: int) -> Path:
    return settings.studies_dir / str(study_id)


def results_path(settings: Settings, study_id: int) -> Path:
    return study_dir(settings, study_id) / "results.json"


def arrays_path(settings: Settings, study_id: int) -> Path:
    return study_dir(settings, study_id) / "arrays.npz"


def load_results(settings: Settings, study_id: int) -> dict[str, Any]:
    return json.loads(results_path(settings, study_id).read_text())


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers stored on the study row (for lists and the dashboard)."""
    methods = {}
    for name, m in results.get("methods", {}).items():
        methods[name] = {
            "relative_residual_to_H": m.get("relative_residual_to_H"),
            # the number the study reports (the point estimate unless lds_summary says else)
            "lds": {alpha: v.get("headline", v.get("value"))
                    for alpha, v in (m.get("lds") or {}).items()},
        }
    training = results.get("training", {})
    return {"methods": methods, "n_params": results.get("n_params"),
            "test_accuracy": training.get("test_accuracy"), "device": results.get("device")}


def list_arrays(path: Path) -> list[dict[str, Any]]:
    """Names, shapes and dtypes of an .npz without loading the arrays."""
    out = []
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as handle:
                major, _minor = np.lib.format.read_magic(handle)
                read_header = (np.lib.format.read_array_header_1_0 if major == 1
                               else np.lib.format.read_array_header_2_0)
                shape, _fortran, dtype = read_header(handle)
            out.append({"name": info.filename[:-4], "shape": list(shape), "dtype": str(dtype)})
    return sorted(out, key=lambda a: a["name"])


def load_array(path: Path, name: str) -> np.ndarray | None:
    with np.load(path, allow_pickle=False) as archive:
        if name not in archive.files:
            return None
        return archive[name]


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def json_safe(array: np.ndarray) -> Any:
    """Nested lists; NaN and ±inf (not JSON) become null."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        obj = array.astype(object)
        obj[~np.isfinite(array)] = None
        return obj.tolist()
    if array.dtype.kind == "c":
        return [[z.real, z.imag] for z in array.ravel().tolist()]
    return array.tolist()


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


CSV_COLUMNS = ["study_id", "spec_hash", "method", "alpha", "lds", "lds_ci_low", "lds_ci_high",
               "relative_residual_to_H", "relative_residual_to_GGN", "condition_number_damped",
               "spectrum_min", "spectrum_max", "n_dropped", "curvature_seconds"]


def results_csv(study_id: int, results: dict[str, Any]) -> str:
    """One row per method and α: the LDS with its interval and the curvature diagnostics."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for name, m in results.get("methods", {}).items():
        lds = m.get("lds") or {None: {}}
        for alpha, value in lds.items():
            writer.writerow([_fmt(v) for v in [
                study_id, results.get("spec_hash"), name, alpha, value.get("value"),
                value.get("ci_low"), value.get("ci_high"), m.get("relative_residual_to_H"),
                m.get("relative_residual_to_GGN"), (m.get("condition_number") or {}).get("damped"),
                (m.get("spectrum") or {}).get("min"), (m.get("spectrum") or {}).get("max"),
                (m.get("inverse") or {}).get("n_dropped"), m.get("timing_seconds")]])
    return buffer.getvalue()
