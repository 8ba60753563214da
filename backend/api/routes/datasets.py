"""/api/v1/datasets: upload a .csv/.npz (validated by curvscope.data), list, get, delete.

An upload is checked before anything is stored: size limit while streaming, then
``curvscope.data.load_data`` on a temporary copy (any problem → 422 naming the row/column).
Accepted files are stored content-addressed as ``<data_dir>/datasets/<sha256[:16]>.<ext>``;
the same content uploaded twice is the same data set. A study uses one with
``{"data": {"name": "file", "path": "dataset:<id>"}}``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from sqlalchemy import func, select

from backend.api.deps import SessionDep, SettingsDep, WriteAuth, write_tx
from backend.core.problems import Problem, pydantic_errors, sentence
from backend.disk import require_space
from backend.models import ACTIVE_STATES, Dataset, Study
from backend.schemas import (
    API_PREFIX,
    PROBLEM_RESPONSES,
    STORAGE_RESPONSES,
    DatasetList,
    DatasetOut,
    dataset_out,
)

MAX_ID = 2**31 - 1
DatasetId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="The data set's id.")]
router = APIRouter(prefix="/datasets", tags=["datasets"], responses=PROBLEM_RESPONSES)
SUFFIXES = (".csv", ".npz")


def _bad_upload(message: str, field: str = "file") -> Problem:
    errors = [{"field": field, "message": message}]
    return Problem(422, sentence("The upload was refused", errors), kind="invalid-upload",
                   title="Invalid upload", errors=errors)


def check_npz_size(path: Path, name: str, limit: int) -> None:
    """Refuse an .npz by what it decompresses to, before loading a byte of it: every member's
    shape and dtype come from its .npy header (numpy.lib.format), so a 3 MB file that would
    inflate to gigabytes costs nothing. Object arrays (pickles) are refused too."""
    import zipfile

    import numpy as np
    from numpy.lib import format as npy

    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > 64:
                raise _bad_upload(f"{name}: {len(members)} arrays; an .npz data set holds X "
                                  "and y")
            for info in members:
                declared = info.file_size  # the zip directory's uncompressed size
                with archive.open(info) as member:
                    version = npy.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = npy.read_array_header_1_0(member)
                    elif version in ((2, 0), (3, 0)):
                        shape, _, dtype = npy.read_array_header_2_0(member)
                    else:
                        raise ValueError(f"unknown .npy version {version}")
                if dtype.hasobject:
                    raise _bad_upload(f"{name}: array {info.filename!r} holds Python objects "
                                      "(a pickle); only numeric arrays are read")
                total += max(declared, int(np.prod(shape, dtype=object)) * dtype.itemsize)
                if total > limit:
                    raise Problem(413, f"{name} would decompress to more than {limit:,} bytes "
                                  f"(array {info.filename!r} alone is {tuple(shape)} of "
                                  f"{dtype}); the server reads at most {limit:,} "
                                  "(CURVSCOPE_MAX_DECOMPRESSED_BYTES).",
                                  kind="upload-too-large-decompressed")
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as exc:
        raise _bad_upload(f"{name}: not a readable .npz archive ({exc})") from None


def _safe_name(filename: str | None) -> str:
    name = Path(filename or "").name
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[-100:].lstrip(".")
    if not name.lower().endswith(SUFFIXES):
        raise _bad_upload(f"the file must be a .csv (header row, numeric features, integer "
                          f"labels) or an .npz (arrays X and y); got {filename!r}")
    return name


@router.post("", status_code=201, response_model=DatasetOut, dependencies=[WriteAuth],
             summary="Upload a .csv or .npz data set",
             responses={200: {"model": DatasetOut, "description": "Same content as an "
                              "existing data set: that one."},
                        413: {"description": "Larger than the upload limit, or than the "
                              "decompressed limit (.npz)."}, **STORAGE_RESPONSES})
def upload_dataset(
    request: Request, session: SessionDep, settings: SettingsDep,
    file: Annotated[UploadFile, File(description=".csv (header row, numeric features, "
                                     "integer labels) or .npz (X and y)")],
    label_column: Annotated[str | None, Form(
        max_length=1000, description="CSV: name or 0-based index of the label column; "
        "default the last")] = None,
) -> JSONResponse:
    from pydantic import ValidationError

    from curvscope.data import DataSpec, DataValidationError, load_data

    name = _safe_name(file.filename)
    require_space(settings)
    settings.datasets_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.datasets_dir, prefix=".upload-") as tmp:
        tmp_path = Path(tmp) / name
        digest, size = hashlib.sha256(), 0
        with open(tmp_path, "wb") as out:
            while chunk := file.file.read(1 << 20):
                size += len(chunk)
                if size > settings.max_upload_bytes:
                    raise Problem(413, f"The file is larger than the upload limit of "
                                  f"{settings.max_upload_bytes:,} bytes.", kind="upload-too-large")
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise _bad_upload(f"{name}: the file is empty")
        if name.lower().endswith(".npz"):
            check_npz_size(tmp_path, name, settings.max_decompressed_bytes)
        sha = digest.hexdigest()
        existing = session.scalars(select(Dataset).where(Dataset.sha256 == sha)).first()
        if existing is not None:
            return JSONResponse(dataset_out(existing).model_dump(mode="json"), status_code=200,
                                headers={"Location": f"{API_PREFIX}/datasets/{existing.id}"})
        count = session.scalar(select(func.count()).select_from(Dataset)) or 0
        if count >= settings.max_datasets:
            raise Problem(409, f"The server holds its limit of {settings.max_datasets} data "
                          "sets; delete one first.", kind="dataset-limit")
        label: int | str | None = label_column
        if label_column is not None and label_column.isdigit():
            label = int(label_column)
        try:
            data = load_data(DataSpec(name="file", path=str(tmp_path), label_column=label))
        except ValidationError as exc:
            errors = pydantic_errors(exc.errors())
            for e in errors:
                e["field"] = "label_column" if "label_column" in e["field"] else "file"
            raise Problem(422, sentence("The upload was refused", errors),
                          kind="invalid-upload", title="Invalid upload", errors=errors) from None
        except DataValidationError as exc:
            raise _bad_upload(str(exc).replace(str(tmp_path), name)) from None
        target = settings.datasets_dir / f"{sha[:16]}{Path(name).suffix.lower()}"
        os.replace(tmp_path, target)
    try:
        with write_tx(request) as tx:
            dataset = Dataset(name=name, format=target.suffix[1:], sha256=sha, path=str(target),
                              size_bytes=size, label_column=label_column,
                              n_rows=data.n_train + data.n_test, n_features=data.n_features,
                              n_classes=data.n_classes)
            tx.add(dataset)
    except Exception:
        target.unlink(missing_ok=True)
        raise
    return JSONResponse(dataset_out(dataset).model_dump(mode="json"), status_code=201,
                        headers={"Location": f"{API_PREFIX}/datasets/{dataset.id}"})


@router.get("", response_model=DatasetList, summary="List uploaded data sets")
def list_datasets(session: SessionDep, limit: Annotated[int, Query(ge=1, le=500)] = 100,
                  offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0) -> DatasetList:
    count = session.scalar(select(func.count()).select_from(Dataset)) or 0
    rows = session.scalars(select(Dataset).order_by(Dataset.id.desc()).limit(limit)
                           .offset(offset)).all()
    return DatasetList(data=[dataset_out(d) for d in rows], count=count)


def _get(session, dataset_id: int) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise Problem(404, f"There is no data set with id {dataset_id}.",
                      kind="dataset-not-found")
    return dataset


@router.get("/{dataset_id:int}", response_model=DatasetOut, summary="One data set")
def get_dataset(dataset_id: DatasetId, session: SessionDep) -> DatasetOut:
    return dataset_out(_get(session, dataset_id))


@router.delete("/{dataset_id:int}", status_code=204, dependencies=[WriteAuth],
               summary="Delete a data set no queued or running study uses")
def delete_dataset(request: Request, dataset_id: DatasetId) -> Response:
    with write_tx(request) as tx:
        dataset = _get(tx, dataset_id)
        users = tx.scalars(select(Study.id).where(Study.dataset_id == dataset_id,
                                                  Study.state.in_(ACTIVE_STATES))).all()
        if users:
            raise Problem(409, f"Data set {dataset_id} is used by the queued or running "
                          f"studies {', '.join(map(str, users))}; cancel them first.",
                          kind="dataset-in-use")
        path = Path(dataset.path)
        tx.delete(dataset)
    path.unlink(missing_ok=True)
    return Response(status_code=204)


