"""Readers for user-supplied .csv and .npz classification data, with line-precise errors.

Every problem is raised as :class:`DataValidationError` with a sentence naming the file,
the offending line (CSV, 1-based, header = line 1) or row/column, and what is allowed;
no csv/numpy traceback leaks out.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from .spec import DataValidationError

ALLOWED_SUFFIXES = (".csv", ".npz")


def read_file(path: str, label_column: int | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read ``path`` (.csv or .npz) into ``(X float64 (n, d), y int64 (n,))`` of raw labels."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in ALLOWED_SUFFIXES:
        raise DataValidationError(
            f"{path}: unsupported file extension {p.suffix or '(none)'!r}; allowed are .csv "
            "(header row, numeric feature columns, integer label column) and .npz "
            "(arrays 'X' and 'y', or 'features' and 'labels')."
        )
    if not p.is_file():
        raise DataValidationError(f"{path}: no such file (or it is not a regular file).")
    if suffix == ".csv":
        return read_csv(p, label_column)
    if label_column is not None:
        raise DataValidationError(
            f"{path}: label_column applies to CSV files only; an .npz file gives its labels "
            "in the array 'y' (or 'labels')."
        )
    return read_npz(p)


def _to_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _to_int_label(text: str) -> int | None:
    """Parse an integer label; integer-valued floats such as '2.0' are accepted."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        f = _to_float(text)
        return int(f) if f is not None and math.isfinite(f) and f.is_integer() else None


def _label_index(header: list[str], label_column: int | str | None, where: str) -> int:
    k = len(header)
    if label_column is None:
        return k - 1
    if isinstance(label_column, int):
        if label_column < k:
            return label_column
        raise DataValidationError(
            f"{where}: label_column={label_column} is out of range; the header has {k} "
            f"columns, so a 0-based index must be 0..{k - 1}."
        )
    matches = [j for j, h in enumerate(header) if h == label_column]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise DataValidationError(
            f"{where}: the header names {len(matches)} columns {label_column!r} "
            f"(0-based indices {matches}); give label_column as an index instead."
        )
    if label_column.isdigit():
        return _label_index(header, int(label_column), where)
    shown = ", ".join(repr(h) for h in header[:20]) + (", ..." if k > 20 else "")
    raise DataValidationError(
        f"{where}: no column is named {label_column!r}; the header has {shown}."
    )


def read_csv(path: Path, label_column: int | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a CSV with a header row; blank lines are skipped.

    The header is required: a first line made only of numbers is rejected as data, unless
    it is exactly ``0,1,...,k-1`` (the column names pandas writes by default).
    """
    rows: list[tuple[int, list[str]]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            for row in reader:
                if any(cell.strip() for cell in row):
                    rows.append((reader.line_num, row))
    except UnicodeDecodeError as e:
        raise DataValidationError(f"{path}: is not UTF-8 text ({e.reason}).") from e
    except OSError as e:
        raise DataValidationError(f"{path}: cannot be read ({e.strerror}).") from e
    except csv.Error as e:
        raise DataValidationError(f"{path}, line {reader.line_num}: malformed CSV ({e}).") from e

    if not rows:
        raise DataValidationError(f"{path}: the file is empty; a header row is required.")
    header_line, header = rows[0]
    header = [h.strip() for h in header]
    k = len(header)
    if all(_to_float(h) is not None for h in header) and header != [str(j) for j in range(k)]:
        raise DataValidationError(
            f"{path}, line {header_line}: the first line looks like data, not a header; "
            "a header row naming the columns is required (e.g. 'x0,x1,label')."
        )
    if k < 2:
        raise DataValidationError(
            f"{path}, line {header_line}: the header has {k} column; at least one feature "
            "column and one label column are required."
        )
    data = rows[1:]
    if not data:
        raise DataValidationError(f"{path}: the file has a header but no data rows.")
    for line, row in data:
        if len(row) != k:
            raise DataValidationError(
                f"{path}, line {line}: expected {k} fields (as in the header) but found "
                f"{len(row)}; every row needs one value per header column."
            )

    li = _label_index(header, label_column, f"{path}, line {header_line}")
    feat_cols = [j for j in range(k) if j != li]
    X = _parse_features(path, header, feat_cols, data)
    y = np.empty(len(data), dtype=np.int64)
    for r, (line, row) in enumerate(data):
        label = _to_int_label(row[li])
        if label is None:
            raise DataValidationError(
                f"{path}, line {line}: label {row[li]!r} in column {header[li]!r} is not an "
                "integer; labels must be integers (integer-valued numbers such as 2.0 are "
                "accepted)."
            )
        y[r] = label
    return X, y


def _parse_features(
    path: Path, header: list[str], feat_cols: list[int], data: list[tuple[int, list[str]]]
) -> np.ndarray:
    """Fast numpy parse; on any failure, a cell-by-cell pass that names the first bad cell."""
    try:
        X = np.array([[row[j] for j in feat_cols] for _, row in data], dtype=np.float64)
        if np.isfinite(X).all():
            return X
    except ValueError:
        pass
    X = np.empty((len(data), len(feat_cols)), dtype=np.float64)
    for r, (line, row) in enumerate(data):
        for c, j in enumerate(feat_cols):
            v = _to_float(row[j])
            if v is None or not math.isfinite(v):
                raise DataValidationError(
                    f"{path}, line {line}, column {header[j]!r} (0-based index {j}): "
                    f"{row[j]!r} is not a finite number; feature values must be finite "
                    "numbers (no text, empty cells, NaN or inf)."
                )
            X[r, c] = v
    return X


def _pick(arrays: dict[str, np.ndarray], names: tuple[str, str], path: Path, what: str):
    for key in names:
        if key in arrays:
            return key, arrays[key]
    raise DataValidationError(
        f"{path}: no {what} array; expected an array named {names[0]!r} (or {names[1]!r}), "
        f"found {sorted(arrays) or 'none'}."
    )


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an .npz with a 2-D numeric ``X``/``features`` and 1-D integer ``y``/``labels``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {key: z[key] for key in z.files}
    except Exception as e:  # corrupt zip, pickled/object arrays, a bare .npy, ...
        raise DataValidationError(
            f"{path}: cannot be read as an .npz archive of plain numeric arrays ({e})."
        ) from e
    xk, X = _pick(arrays, ("X", "features"), path, "feature")
    yk, y = _pick(arrays, ("y", "labels"), path, "label")
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise DataValidationError(
            f"{path}: array {xk!r} has shape {X.shape}; it must be 2-D (rows x features) "
            "with at least one row and one column."
        )
    if X.dtype.kind not in "biuf":
        raise DataValidationError(
            f"{path}: array {xk!r} has dtype {X.dtype}; feature values must be real numbers."
        )
    X = X.astype(np.float64)
    bad = np.argwhere(~np.isfinite(X))
    if len(bad):
        r, c = bad[0]
        raise DataValidationError(
            f"{path}: array {xk!r}, row {r} (0-based), column {c}: value {X[r, c]} is not "
            "finite; feature values must be finite numbers (no NaN or inf)."
        )
    if y.ndim != 1 or len(y) != len(X):
        raise DataValidationError(
            f"{path}: array {yk!r} has shape {y.shape} but {xk!r} has {len(X)} rows; labels "
            f"must be 1-D with one label per row, i.e. shape ({len(X)},)."
        )
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~(np.isfinite(y) & (y == np.round(y))))
        if len(bad):
            raise DataValidationError(
                f"{path}: array {yk!r}, row {bad[0]} (0-based): label {y[bad[0]]} is not an "
                "integer; labels must be integers (integer-valued floats such as 2.0 are "
                "accepted)."
            )
    elif y.dtype.kind not in "biu":
        raise DataValidationError(
            f"{path}: array {yk!r} has dtype {y.dtype}; labels must be integers."
        )
    return X, y.astype(np.int64)
