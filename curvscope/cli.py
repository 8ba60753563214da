"""The ``curvscope`` command.

``curvscope run --preset quick --out runs/quick`` runs a whole study with no server and writes
``results.json`` and ``arrays.npz``. Bad input ends with a one-paragraph message and exit
code 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Curvature-approximation diagnostics for influence functions.")
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


class UserError(Exception):
    """Bad input: printed as a message, exit code 2."""


def format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "spec"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; `curvscope schema` lists the fields)"
        got = item.get("input")
        shown = "" if isinstance(got, dict) or item["type"] == "missing" else f" (got {got!r})"
        lines.append(f"  {where}: {message}{shown}")
    return "invalid study spec:\n" + "\n".join(lines)


def load_config(path: Path | None) -> dict:
    if path is None:
        return {}
    if not path.exists():
        raise UserError(f"config file {path} does not exist")
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {path} is not valid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"config file {path} is not valid JSON: {exc}") from None


def refuse_mismatched_rerun(target: Path, spec_hash: str, overwrite: bool) -> None:
    """Results of another spec in the output folder are never silently replaced."""
    existing = target / "results.json"
    if overwrite or not existing.exists():
        return
    try:
        previous = json.loads(existing.read_text()).get("spec_hash")
    except (json.JSONDecodeError, OSError):
        previous = None
    if previous != spec_hash:
        raise UserError(
            f"{target} already holds the results of another study ({previous}); this spec is "
            f"{spec_hash}. Choose another --out, or pass --overwrite to replace them")


#: The spec options ``run`` and ``estimate`` share.
ConfigOption = Annotated[Path | None, typer.Option(help="Study spec as TOML (or JSON).")]
PresetOption = Annotated[str | None, typer.Option(help="Start from a preset: quick or paper.")]


@app.command()
def run(
    config: ConfigOption = None,
    preset: PresetOption = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Folder for results.json and arrays.npz [default: runs/<spec hash>].")
    ] = None,
    cache_dir: Annotated[Path | None, typer.Option(
        help="Stage cache [default: $CURVSCOPE_CACHE_DIR or ~/.cache/curvscope].")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recompute every stage.")
                        ] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace results of a different study already in --out.")] = False,
):
    """Run one study locally, with no server, and write its results."""
    from curvscope.data import DataValidationError
    from curvscope.linalg import default_backend
    from curvscope.spec import resolve_spec
    from curvscope.storage import default_cache_dir
    from curvscope.study import MemoryBudgetError, run_study
    from curvscope.training import TrainingDivergedError

    try:
        spec = resolve_spec(load_config(config), preset)
        default_backend()  # a bad CURVSCOPE_EIGH_BACKEND is said now, not after training
    except ValidationError as exc:
        raise UserError(format_validation_error(exc)) from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    target = out_dir or Path("runs") / spec.spec_hash()
    refuse_mismatched_rerun(target, spec.spec_hash(), overwrite)
    cache = None if no_cache else (cache_dir or default_cache_dir())
    err.print(f"study [bold]{spec.name or 'unnamed'}[/] ({spec.spec_hash()}) → {target}")
    columns = (TextColumn("{task.description:<24}"), BarColumn(),
               TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False, disable=not err.is_terminal and
                  os.environ.get("CURVSCOPE_PROGRESS") != "1") as bars:
        tasks: dict[str, int] = {}

        def progress(stage: str, fraction: float):
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=1.0)
            bars.update(tasks[stage], completed=fraction)

        try:
            result = run_study(spec, target, cache, progress)
        except (DataValidationError, MemoryBudgetError) as exc:
            raise UserError(str(exc)) from None
        except TrainingDivergedError as exc:
            raise UserError(str(exc)) from None
    if bars.disable:
        for stage, seconds in result.results["timings"].items():
            err.print(f"  {stage:<24} {seconds:8.2f} s")
    summary = {name: m["relative_residual_to_H"] for name, m in result.results["methods"].items()}
    out.print(f"wrote {target / 'results.json'} and {target / 'arrays.npz'}")
    out.print("relative residual to H: " + ", ".join(
        f"{n} {v:.3g}" if v is not None else f"{n} –" for n, v in summary.items()))


@app.command()
def report(
    study_dir: Annotated[Path, typer.Argument(help="A folder written by `curvscope run`.")],
):
    """Print a study's headline numbers (LDS table, decomposition, timings) as Markdown, or a
    ladder's table for a folder written by `curvscope ladder`."""
    from curvscope.report import markdown_report

    if (study_dir / "ladder_spec.json").exists():
        from curvscope.ladder import load_ladder_directory, markdown_ladder

        summary = load_ladder_directory(study_dir)
        for alpha in (summary["rungs"][0].get("alphas") or [None]):
            out.print(markdown_ladder(summary, alpha), markup=False, highlight=False)
        return
    path = study_dir / "results.json"
    if not path.exists():
        raise UserError(f"{path} does not exist: give the --out folder of a finished run")
    try:
        text = markdown_report(path)  # validated and upgraded through curvscope.results
    except ValidationError as exc:
        raise UserError(f"{path} does not follow the results contract:\n"
                        + "\n".join(f"  {'.'.join(map(str, e['loc']))}: {e['msg']}"
                                     for e in exc.errors()[:10])) from None
    except (ValueError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} cannot be read as results: {exc}") from None
    out.print(text, markup=False, highlight=False)


@app.command()
def ladder(
    preset: Annotated[str, typer.Option(help="The base study's preset: quick or paper.")
                      ] = "paper",
    config: Annotated[Path | None, typer.Option(
        help="A ladder as TOML/JSON: base (a spec), rungs, path; overrides --preset.")] = None,
    rungs: Annotated[str | None, typer.Option(
        help="Comma-separated choices to switch, in cumulative order [default: all: "
        "split,schedule,blocks,fisher,kfac_damping,inverse_rule,lds_summary].")] = None,
    path: Annotated[str, typer.Option(help="each, cumulative or both.")] = "both",
    out_dir: Annotated[Path, typer.Option("--out", help="Folder of the rungs' studies and "
                                          "ladder.json.")] = Path("runs/ladder"),
    cache_dir: Annotated[Path | None, typer.Option(
        help="Stage cache [default: $CURVSCOPE_CACHE_DIR or ~/.cache/curvscope].")] = None,
):
    """Run the ablation ladder locally: curvscope's protocol toward the official code's, one
    choice at a time; print its table."""
    from curvscope.ladder import LadderSpec, markdown_ladder, run_ladder
    from curvscope.storage import default_cache_dir

    body = load_config(config) if config else {"base": {"preset": preset}}
    if rungs is not None:
        body["rungs"] = [r.strip() for r in rungs.split(",") if r.strip()]
    body.setdefault("path", path)
    try:
        spec = LadderSpec.model_validate(body)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc).replace("study spec", "ladder")) from None

    def progress(rung: str, stage: str, fraction: float) -> None:
        if fraction == 0.0:
            err.print(f"  {rung:<28} {stage}")

    try:
        summary = run_ladder(spec, out_dir, cache_dir or default_cache_dir(), progress)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc)) from None
    for alpha in (summary["rungs"][0].get("alphas") or [None]):
        out.print(markdown_ladder(summary, alpha), markup=False, highlight=False)
    out.print(f"wrote {out_dir / 'ladder.json'}")


def default_data_dir() -> Path:
    return Path(os.environ.get("CURVSCOPE_DATA_DIR", "curvscope-data"))


@app.command()
def calibrate(
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="Where to write the probe [default: <data-dir>/calibration/<host>.json, "
        "where the service's API reads it].")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        help="The service's data folder [default: $CURVSCOPE_DATA_DIR or curvscope-data].")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="torch threads (as the worker's).")
                       ] = None,
):
    """Measure this machine's rates for the kernels a study runs (a few seconds) and write
    them where cost estimates read them."""
    import torch

    from curvscope.calibrate import worker_calibration_path, write_calibration

    if threads:
        torch.set_num_threads(threads)
    target = out_file or worker_calibration_path(data_dir or default_data_dir())
    result = write_calibration(target)
    for key, value in result["rates"].items():
        out.print(f"  {key:<18} {value:.4g}")
    out.print(f"probe took {result['probe_seconds']:.1f} s on {result['device']}; "
              f"wrote {target}")


@app.command()
def estimate(
    config: ConfigOption = None,
    preset: PresetOption = None,
    calibration: Annotated[Path | None, typer.Option(
        help="A probe written by `curvscope calibrate` [default: the newest under "
        "<data-dir>/calibration].")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        help="The service's data folder [default: $CURVSCOPE_DATA_DIR or curvscope-data].")
    ] = None,
):
    """Estimate a study's time per stage and peak memory before running it."""
    from curvscope.cost import calibration_dir, estimate_time, read_calibrations
    from curvscope.spec import resolve_spec

    try:
        spec = resolve_spec(load_config(config), preset)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc)) from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if calibration is not None:
        try:
            probes = [json.loads(calibration.read_text())]
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{calibration} cannot be read as a calibration: {exc}") from None
    else:
        probes = read_calibrations(calibration_dir(data_dir or default_data_dir()))
    rates = probes[0]["rates"] if probes else None
    basis = (f"the calibration probe of {probes[0].get('host')} "
             f"({probes[0].get('measured_at')})" if probes else None)
    try:
        result = estimate_time(spec, rates, basis=basis)
    except ValueError as exc:  # a file data set: its shape is known once it is read
        raise UserError(str(exc)) from None
    for stage, seconds in result["stage_seconds"].items():
        out.print(f"  {stage:<26} {seconds:9.2f} s")
    out.print(f"total ≈ {result['seconds']:.1f} s, peak memory ≈ "
              f"{result['peak_memory_bytes'] / 2**30:.2f} GiB, from {result['basis']}")
    if not probes:
        out.print("(run `curvscope calibrate` to measure this machine)")


@app.command()
def methods():
    """List the curvature methods of the registry."""
    from curvscope.registry import METHODS

    for info in METHODS.values():
        out.print(f"{info.name:<14} {info.kind:<10} {info.description}")


@app.command()
def schema():
    """Print the study spec's JSON schema (fields, bounds, descriptions)."""
    from curvscope.spec import StudySpec

    out.print_json(json.dumps(StudySpec.model_json_schema()))


from backend import launch  # noqa: E402,F401  registers up/api/worker/submit (the service side)


def main() -> None:
    try:
        app(standalone_mode=False)
    except UserError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)  # [service] stays
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors carry their own message
        if isinstance(exc, _click_exceptions()):
            exc.show()
            sys.exit(exc.exit_code)
        raise


def _click_exceptions() -> tuple[type[Exception], ...]:
    """click's ClickException, and the copy of it that newer typer releases vendor
    (``typer._click``) and raise instead: an unknown option is a message, not a traceback."""
    import click

    kinds: list[type[Exception]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException
    except ImportError:
        pass
    else:
        kinds.append(ClickException)
    return tuple(kinds)


if __name__ == "__main__":
    main()
