"""Pure helpers of the pages: formatting, URL state, list rows, the spec form built from the
API's JSON schema, estimates. No I/O and no Dash here; the tests call them directly."""

from __future__ import annotations

import json
import math
import statistics
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from curvscope.results import has_images
from frontend.figures.study import block_labels, ordered_methods

STATES = ["queued", "running", "succeeded", "failed", "cancelled"]
ACTIVE = ("queued", "running")
SORTS = {
    "-created_at": "newest first", "created_at": "oldest first", "name": "name A→Z",
    "-name": "name Z→A", "state": "state", "-progress": "progress", "-finished_at":
    "recently finished",
}
PAGE_SIZE = 20
#: GFLOP per second of a CPU worker, used until finished studies on the service calibrate it
DEFAULT_GFLOP_PER_S = 5.0


# -- formatting -----------------------------------------------------------------------------
def fmt_number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if value != 0 and (abs(value) < 10 ** -(digits - 1) or abs(value) >= 10**5):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}f}"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "–"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def fmt_time(value: str | None) -> str:
    when = parse_time(value)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if when else "–"


def fmt_percent(fraction: float | None) -> str:
    return "–" if fraction is None else f"{100 * fraction:.0f} %"


# -- URL state ------------------------------------------------------------------------------
def parse_int(value: Any, default: int | None = None, lo: int | None = None,
              hi: int | None = None) -> int | None:
    """An int from a URL parameter, clipped to [lo, hi]; ``default`` when unparsable."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return default
    if lo is not None:
        number = max(lo, number)
    if hi is not None:
        number = min(hi, number)
    return number


def parse_ids(value: Any) -> list[int]:
    """``"3,5, 7"`` or ``[3, "5"]`` → [3, 5, 7] (order kept, duplicates and junk dropped)."""
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else str(value).replace(" ", ",").split(",")
    out: list[int] = []
    for item in items:
        number = parse_int(item)
        if number is not None and number > 0 and number not in out:
            out.append(number)
    return out


def parse_list(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return [str(i).strip() for i in items if str(i).strip()]


def pick(value: Any, options: list, default: Any = None) -> Any:
    """``value`` if it is one of ``options`` (compared as strings), else ``default``."""
    if value is None:
        return default
    for option in options:
        if str(option) == str(value):
            return option
    return default


def query_string(params: dict[str, Any]) -> str:
    """``{a: 1, b: None, c: [x, y]}`` → ``?a=1&c=x,y`` (empty values left out)."""
    clean = {}
    for key, value in params.items():
        if value is None or value == "" or value == []:
            continue
        clean[key] = ",".join(map(str, value)) if isinstance(value, list | tuple) else value
    return ("?" + urlencode(clean, safe=",")) if clean else ""


def url_sync_js(keys: list[str], defaults: dict[str, Any] | None = None,
                all_of: dict[str, int] | None = None, empty: dict[str, str] | None = None
                ) -> str:
    """A clientside callback that writes its inputs into the address bar's query (keys in
    order; values equal to ``defaults`` left out) with history.replaceState, so the view is a
    permalink without a page reload. ``all_of`` maps a list-valued key to the position of an
    extra argument holding its options: a list with every option is left out too. ``empty``
    maps a key to what an empty value writes (a checkbox whose default is ticked)."""
    n = len(keys) + len(all_of or {})
    return (
        "function(" + ", ".join(f"v{i}" for i in range(n)) + ") {\n"
        "  const keys = " + json.dumps(keys) + ";\n"
        "  const allOf = " + json.dumps(all_of or {}) + ";\n"
        "  const defaults = " + json.dumps({k: str(v) for k, v in (defaults or {}).items()})
        + ";\n"
        "  const empty = " + json.dumps(empty or {}) + ";\n"
        "  const values = Array.from(arguments);\n"
        "  const params = new URLSearchParams();\n"
        "  keys.forEach(function(key, i) {\n"
        "    let v = values[i];\n"
        "    if (Array.isArray(v) && allOf[key] !== undefined &&\n"
        "        v.length === (values[allOf[key]] || []).length) { return; }\n"
        "    if (Array.isArray(v)) { v = v.join(','); }\n"
        "    if ((v === '' || v === null) && empty[key] !== undefined) { v = empty[key]; }\n"
        "    if (v === null || v === undefined || v === '') { return; }\n"
        "    if (typeof v === 'number' && !isFinite(v)) { return; }\n"
        "    if (defaults[key] !== undefined && String(v) === defaults[key]) { return; }\n"
        "    params.set(key, String(v));\n"
        "  });\n"
        "  const q = params.toString().replace(/%2C/g, ',').replace(/%3A/g, ':');\n"
        "  const url = window.location.pathname + (q ? '?' + q : '');\n"
        "  if (url !== window.location.pathname + window.location.search) {\n"
        "    window.history.replaceState(window.history.state, '', url);\n"
        "  }\n"
        "  return window.dash_clientside.no_update;\n"
        "}")


# -- studies list -----------------------------------------------------------------------------
def list_params(state: Any = None, q: Any = None, preset: Any = None, sort: Any = None,
                page: Any = None, page_size: int = PAGE_SIZE) -> dict[str, Any]:
    """Normalised filters of the studies list (from the URL or the controls)."""
    states = [s for s in parse_list(state) if s in STATES]
    return {"state": states, "q": (str(q).strip()[:200] or None) if q else None,
            "preset": (str(preset).strip() or None) if preset else None,
            "sort": sort if sort in SORTS else "-created_at",
            "page": parse_int(page, 1, lo=1), "page_size": page_size}


def api_list_args(params: dict[str, Any]) -> dict[str, Any]:
    return {"state": params["state"] or None, "q": params["q"], "preset": params["preset"],
            "sort": params["sort"], "limit": params["page_size"],
            "offset": (params["page"] - 1) * params["page_size"]}


def page_count(count: int, page_size: int = PAGE_SIZE) -> int:
    return max(1, math.ceil(count / page_size))


def headline_alpha(summaries: list[dict | None]) -> str | None:
    """The α shown in the list: 0.5 when any study has it, else the smallest present."""
    alphas: set[str] = set()
    for summary in summaries:
        for method in ((summary or {}).get("methods") or {}).values():
            alphas |= set((method.get("lds") or {}).keys())
    if not alphas:
        return None
    return "0.5" if "0.5" in alphas else sorted(alphas, key=float)[0]


def dataset_names(datasets: list[dict] | None) -> dict[str, str]:
    """Stored file stem → an uploaded data set's name and id: the service keeps an upload as
    ``<data_dir>/datasets/<sha256[:16]>.<ext>``, and a study's spec holds that path."""
    return {str(d.get("sha256", ""))[:16]: f"{d.get('name')} (#{d.get('id')})"
            for d in datasets or [] if d.get("sha256")}


def dataset_label(spec: dict | None, names: dict[str, str] | None = None) -> str:
    """What a study ran on, for people: an uploaded file by its name (never the server's
    path to it)."""
    if not spec:
        return "–"
    data = spec.get("data") or {}
    name = data.get("name", "?")
    if name == "file":
        path = str(data.get("path") or "")
        if path.startswith("dataset:"):
            return f"uploaded data set #{path.removeprefix('dataset:')}"
        stem = path.replace("\\", "/").rsplit("/", 1)[-1].split(".", 1)[0]
        if names and stem in names:
            return names[stem]
        return "uploaded file" + (f" {stem[:8]}…" if stem else "")
    if name == "gaussian_mixture":
        return (f"gaussian mixture ({data.get('n_samples')}×{data.get('n_features')}, "
                f"{data.get('n_classes')} classes)")
    return name


def model_label(spec: dict | None) -> str:
    if not spec:
        return "–"
    model = spec.get("model") or {}
    hidden = model.get("hidden") or []
    widths = "→".join(str(h) for h in hidden) if hidden else "linear"
    return f"MLP {widths} {model.get('activation', '')}".strip()


def list_rows(studies: list[dict]) -> tuple[list[dict], list[str], str | None]:
    """Rows of the studies table, the method columns and the α of the headline LDS (each
    listed study carries its spec's data and model sections)."""
    alpha = headline_alpha([s.get("summary") for s in studies])
    methods = ordered_methods({m for s in studies
                               for m in ((s.get("summary") or {}).get("methods") or {})})
    rows = []
    for study in studies:
        spec = ({"data": study["data"], "model": study.get("model")}
                if study.get("data") else None)
        summary = study.get("summary") or {}
        lds = {m: ((summary.get("methods") or {}).get(m) or {}).get("lds", {}).get(alpha)
               for m in methods}
        rows.append({
            "id": study["id"], "name": study.get("name") or f"study {study['id']}",
            "state": study["state"], "stage": study.get("stage"),
            "progress": study.get("progress") or 0.0, "preset": study.get("preset") or "–",
            "dataset": dataset_label(spec), "model": model_label(spec),
            "n_params": summary.get("n_params"), "test_accuracy": summary.get("test_accuracy"),
            "lds": lds, "created": fmt_time(study.get("created_at")),
            "error": study.get("error"), "cancel_requested": study.get("cancel_requested"),
        })
    return rows, methods, alpha


def any_active(studies: list[dict]) -> bool:
    return any(s.get("state") in ACTIVE for s in studies)


# -- study page -------------------------------------------------------------------------------
def study_meta(detail: dict, results: dict | None) -> dict:
    """The small shared state of a study page: what the selectors offer."""
    meta: dict[str, Any] = {"id": detail["id"], "state": detail["state"],
                            "spec_hash": detail.get("spec_hash"),
                            "finished_at": detail.get("finished_at"),
                            "ready": results is not None}
    if results is None:
        return meta
    methods = ordered_methods(results.get("methods", {}))
    gt = results.get("groundtruth") or {}
    ks: set[int] = set()
    for entry in results.get("methods", {}).values():
        for curve in (entry.get("eigenbasis_overlap_by_k") or {}).values():
            ks |= {int(k) for k in curve}
    meta.update({
        "methods": methods, "blocks": [b["name"] for b in results.get("blocks", [])],
        "block_labels": block_labels(results),
        "alphas": [str(a) for a in gt.get("alphas", [])], "ks": sorted(ks),
        "k": (results.get("spec", {}).get("curvature") or {}).get("eigenbasis_k"),
        "n_test": results.get("n_test"), "n_train": results.get("n_train"),
        "has_groundtruth": bool(gt),
        "has_images": has_images(results),  # the results contract says, not the data's name
    })
    return meta


def method_options(meta: dict) -> list[dict]:
    return [{"label": m, "value": m} for m in meta.get("methods", [])]


def nearest_k(k: Any, ks: list[int], default: int | None) -> int | None:
    """The stored k closest to the requested one (the slider snaps to stored values)."""
    if not ks:
        return None
    wanted = parse_int(k, default if default is not None else ks[0])
    return min(ks, key=lambda j: (abs(math.log(j) - math.log(max(wanted, 1))), j))


def timing_rows(timings: dict | None) -> list[tuple[str, str]]:
    return [(stage, fmt_seconds(seconds)) for stage, seconds in (timings or {}).items()]


def api_links(study_id: int) -> list[tuple[str, str]]:
    """(label, API path) of a study's downloads."""
    base = f"/studies/{study_id}"
    return [("results.json", f"{base}/results"),
            ("CSV (per method and α)", f"{base}/export?format=csv"),
            ("JSON (study and results)", f"{base}/export?format=json")]


# -- the spec form --------------------------------------------------------------------------
def _resolve_ref(schema: dict, prop: dict) -> dict:
    ref = prop.get("$ref")
    if ref:
        return schema.get("$defs", {}).get(ref.rsplit("/", 1)[-1], {})
    return prop


def _non_null(prop: dict) -> tuple[dict, bool]:
    """(the non-null alternative(s) merged, nullable) of an ``anyOf`` with null."""
    options = prop.get("anyOf")
    if not options:
        return prop, False
    nullable = any(o.get("type") == "null" for o in options)
    rest = [o for o in options if o.get("type") != "null"]
    if len(rest) == 1:
        merged = {**{k: v for k, v in prop.items() if k != "anyOf"}, **rest[0]}
        return merged, nullable
    types = [o.get("type") for o in rest]
    return {**{k: v for k, v in prop.items() if k != "anyOf"}, "type": types,
            "alternatives": rest}, nullable


def field_kind(prop: dict) -> str:
    """int, float, bool, enum, str, list_int, list_float, list_str, int_or_str, or json."""
    if "enum" in prop:
        return "enum"
    kind = prop.get("type")
    if kind == "integer":
        return "int"
    if kind == "number":
        return "float"
    if kind == "boolean":
        return "bool"
    if kind == "string":
        return "str"
    if kind == "array":
        item = (prop.get("items") or {}).get("type")
        return {"integer": "list_int", "number": "list_float"}.get(item, "list_str")
    if isinstance(kind, list) and set(kind) == {"integer", "string"}:
        return "int_or_str"
    return "json"


def bounds_text(prop: dict) -> str:
    """'1 ≤ x ≤ 10000', '0 < x ≤ 0.5', 'one of a, b', '1 to 8 items' …"""
    parts = []
    alternatives = prop.get("alternatives") or [prop]
    for alt in alternatives:
        lo = ("≥", alt["minimum"]) if "minimum" in alt else (
            (">", alt["exclusiveMinimum"]) if "exclusiveMinimum" in alt else None)
        hi = ("≤", alt["maximum"]) if "maximum" in alt else (
            ("<", alt["exclusiveMaximum"]) if "exclusiveMaximum" in alt else None)
        if lo and hi:
            lo_op = "≤" if lo[0] == "≥" else "<"
            parts.append(f"{fmt_bound(lo[1])} {lo_op} x {hi[0]} {fmt_bound(hi[1])}")
        elif lo:
            parts.append(f"x {lo[0]} {fmt_bound(lo[1])}")
        elif hi:
            parts.append(f"x {hi[0]} {fmt_bound(hi[1])}")
    if "minItems" in prop or "maxItems" in prop:
        parts.append(f"{prop.get('minItems', 0)} to {prop.get('maxItems', '∞')} items")
    return "; ".join(parts)


def fmt_bound(value: float) -> str:
    if isinstance(value, int) and abs(value) >= 10**6:
        return f"{value:.3g}"
    return str(value)


def form_sections(schema: dict) -> list[dict]:
    """The spec's fields grouped by section (data, model, …), each field with its dotted
    path, kind, bounds, default, nullability and the schema's description."""
    sections: list[dict] = []
    top_fields: list[dict] = []
    for name, prop in schema.get("properties", {}).items():
        target = _resolve_ref(schema, prop)
        if target.get("type") == "object" and "properties" in target:
            fields = [_field(f"{name}.{key}", sub) for key, sub in target["properties"].items()]
            sections.append({"name": name, "title": name.capitalize(),
                             "description": target.get("description", ""), "fields": fields})
        else:
            top_fields.append(_field(name, prop))
    if top_fields:
        sections.insert(0, {"name": "study", "title": "Study", "description": "",
                            "fields": top_fields})
    return sections


def _field(path: str, prop: dict) -> dict:
    merged, nullable = _non_null(prop)
    kind = field_kind(merged)
    if path == "curvature.methods":
        kind = "methods"
    return {"path": path, "kind": kind, "nullable": nullable, "enum": merged.get("enum"),
            "title": prop.get("title") or path.rsplit(".", 1)[-1],
            "description": prop.get("description", ""), "bounds": bounds_text(merged),
            "default": prop.get("default")}


def get_path(spec: dict, path: str) -> Any:
    node: Any = spec
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def set_path(spec: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    node = spec
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def value_to_text(kind: str, value: Any) -> str:
    """A spec value as the text its input shows."""
    if value is None:
        return ""
    if kind.startswith("list_"):
        return ", ".join(str(v) for v in value)
    if kind == "json":
        return json.dumps(value)
    return str(value)


def _number(text: str, integer: bool) -> Any:
    try:
        return int(text) if integer else float(text)
    except ValueError:
        if integer:
            try:  # "1e3" or "100.0": let the API judge a whole float
                as_float = float(text)
            except ValueError:
                return text
            return int(as_float) if as_float.is_integer() else as_float
        return text


def parse_field(kind: str, value: Any, nullable: bool = False) -> Any:
    """What the form holds → the JSON value sent to the API. Text that does not parse is
    sent as it is, so the API's own message explains what is wrong with it."""
    if kind in ("enum", "methods"):
        return value
    if kind == "dataset":
        return value or None
    if kind == "bool":
        return value if isinstance(value, bool) else str(value).lower() in ("true", "1", "yes")
    text = "" if value is None else str(value).strip()
    if text == "":
        return None if nullable else ([] if kind.startswith("list_") else
                                      ("" if kind == "str" else None))
    if kind == "int":
        return _number(text, True)
    if kind == "float":
        return _number(text, False)
    if kind == "int_or_str":
        return int(text) if text.isdigit() else text
    if kind.startswith("list_"):
        items = [i.strip() for i in text.replace(";", ",").split(",") if i.strip()]
        if kind == "list_int":
            return [_number(i, True) for i in items]
        if kind == "list_float":
            return [_number(i, False) for i in items]
        return items
    if kind == "json":
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def form_config(preset: str | None, fields: list[dict], values: list[Any],
                base: dict | None) -> dict:
    """The body sent to the API: the preset plus every field whose value differs from the
    preset's resolved spec ``base`` (all fields when there is no base)."""
    config: dict[str, Any] = {"preset": preset} if preset else {}
    for field, raw in zip(fields, values, strict=True):
        value = parse_field(field["kind"], raw, field["nullable"])
        if base is not None and get_path(base, field["path"]) == value:
            continue
        set_path(config, field["path"], value)
    return config


SWEEP_ROWS = 3  # fields a sweep on the New study page may vary
SWEEP_KINDS = ("int", "float", "int_or_str", "str", "enum", "bool", "list_int", "list_float",
               "list_str")


def sweep_grid(fields: list[dict], rows: list[tuple[Any, Any]]) -> tuple[dict[str, list], int,
                                                                        list[str]]:
    """The New study page's sweep rows (a field's path, its values separated by ``|``) → the
    grid for POST /sweeps, how many studies it makes, and what is wrong with the rows. Each
    value is read as the field's own input reads it (a list field: ``32, 32 | 64``)."""
    kinds = {f["path"]: f for f in fields}
    grid: dict[str, list] = {}
    problems = []
    for path, text in rows:
        if not path:
            continue
        field = kinds.get(path)
        if field is None or field["kind"] not in SWEEP_KINDS:
            problems.append(f"{path}: cannot be swept here")
            continue
        if path in grid:
            problems.append(f"{path}: chosen twice")
            continue
        values = [parse_field(field["kind"], part, field["nullable"])
                  for part in str(text or "").split("|") if part.strip()]
        if not values:
            problems.append(f"{path}: give its values, separated by |")
            continue
        grid[path] = values
    count = 1
    for values in grid.values():
        count *= len(values)
    return grid, (count if grid else 0), problems


def split_errors(errors: list[dict], paths: list[str]) -> tuple[dict[str, str], list[dict]]:
    """The API's field errors → (path → message for fields of the form, the others)."""
    known = set(paths)
    by_field: dict[str, str] = {}
    others = []
    for item in errors:
        path = str(item.get("field", ""))
        # list items: "groundtruth.alphas[1]" belongs to the alphas field
        base = path.split("[", 1)[0]
        if base in known:
            message = item.get("message", "invalid")
            if base != path:
                message = f"{path[len(base):]}: {message}"
            by_field[base] = f"{by_field[base]}; {message}" if base in by_field else message
        else:
            others.append(item)
    return by_field, others


def time_estimate(estimate: dict, samples: list[tuple[float, float]] | None = None
                  ) -> tuple[float | None, str]:
    """Seconds a study should take, and how that was estimated.

    An API with ``curvscope.cost`` sends ``seconds`` and ``time_basis``: per-stage closed-form
    flop and byte counts at the rates its workers' calibration probe measured on their
    machine, corrected by this service's finished studies; that is the answer. For an older
    API's estimate (GFLOP only) the fallback fits t = a + g / r to the service's finished
    studies (``samples``: (GFLOP, seconds)), the rate r from their spread in GFLOP when they
    span a factor of 10, else the CPU default; it stays a rough guide."""
    if isinstance(estimate.get("seconds"), (int, float)) and estimate["seconds"] > 0:
        return float(estimate["seconds"]), str(estimate.get("time_basis") or "estimated")
    gflop = (estimate.get("retraining_gflop") or 0) + (estimate.get("dense_gflop") or 0)
    if gflop <= 0:
        return None, "no estimate"
    points = [(g, t) for g, t in (samples or []) if g and g > 0 and t and t > 0]
    per_gflop = 1 / DEFAULT_GFLOP_PER_S
    if not points:
        return gflop * per_gflop, (f"assuming {DEFAULT_GFLOP_PER_S:g} GFLOP/s (one CPU "
                                   "worker); a rough guide")
    gs = [g for g, _ in points]
    n = len(points)
    how = f"from {n} finished stud{'y' if n == 1 else 'ies'} on this service"
    if n >= 2 and max(gs) / min(gs) >= 10:
        mean_g = statistics.fmean(gs)
        mean_t = statistics.fmean(t for _, t in points)
        var = sum((g - mean_g) ** 2 for g in gs)
        slope = sum((g - mean_g) * (t - mean_t) for g, t in points) / var
        if slope > 0:
            per_gflop = slope
            how += f" (measured {1 / slope:.1f} GFLOP/s"
        else:
            how += f" ({DEFAULT_GFLOP_PER_S:g} GFLOP/s assumed"
    else:
        how += f" (start-up measured; {DEFAULT_GFLOP_PER_S:g} GFLOP/s assumed"
    start = max(0.0, statistics.median(t - g * per_gflop for g, t in points))
    how += f", {fmt_seconds(start)} start-up)"
    if gflop > 3 * max(gs):
        how += f"; extrapolated beyond the largest ({max(gs):,.0f} GFLOP)"
    return start + gflop * per_gflop, how + "; a rough guide"


#: The order the estimate's stage groups are shown in.
ESTIMATE_GROUPS = ("training", "per-sample gradients", "curvature", "scores", "diagnostics",
                   "retraining", "LDS", "writing results")


def estimate_rows(estimate: dict) -> list[tuple[str, str]]:
    """Readable lines of the API's estimate: sizes, memory, and (from ``curvscope.cost``)
    the time of each stage group that takes at least 1 % of the total."""
    rows = [("parameters", fmt_number(estimate.get("n_params"))),
            ("train / test points", f"{fmt_number(estimate.get('n_train'))} / "
                                    f"{fmt_number(estimate.get('n_test'))}")]
    dense = estimate.get("dense_memory_bytes")
    budget = estimate.get("memory_budget_bytes")
    if dense is not None:
        share = f" ({100 * dense / budget:.0f} % of the {fmt_bytes(budget)} budget)" \
            if budget else ""
        rows.append(("dense curvature memory", fmt_bytes(dense) + share))
    if estimate.get("peak_memory_bytes"):
        rows.append(("peak memory", f"≈ {fmt_bytes(estimate['peak_memory_bytes'])}"))
    if estimate.get("n_retrained_models") is not None:
        rows.append(("retrained models", fmt_number(estimate.get("n_retrained_models"))))
    groups = estimate.get("group_seconds") or {}
    total = sum(v for v in groups.values() if isinstance(v, (int, float)))
    for group in [*ESTIMATE_GROUPS, *sorted(set(groups) - set(ESTIMATE_GROUPS))]:
        seconds = groups.get(group)
        if isinstance(seconds, (int, float)) and total > 0 and seconds >= 0.01 * total:
            rows.append((f"time: {group}", f"≈ {fmt_seconds(seconds)}"))
    gflop = (estimate.get("retraining_gflop") or 0) + (estimate.get("dense_gflop") or 0)
    if gflop:
        rows.append(("compute", f"{gflop:,.0f} GFLOP"))
    return rows


# -- jobs: what each worker is doing ---------------------------------------------------------
#: a worker whose heartbeat is older than this is not taken as alive by the dashboard
HEARTBEAT_STALE_S = 180.0


def worker_tasks(details: list[dict]) -> dict[str, list[str]]:
    """hostname → what it runs, from the details of running studies: a retraining chunk
    carries its worker (``chunks[].worker``) while the study's own ``worker`` is set only by
    the finalize step, so both are read."""
    doing: dict[str, list[str]] = {}
    for study in details:
        if study.get("state") != "running":
            continue
        for chunk in study.get("chunks") or []:
            if chunk.get("state") == "running" and chunk.get("worker"):
                doing.setdefault(chunk["worker"], []).append(
                    f"study #{study['id']}: retraining chunk {chunk['index']} "
                    f"(α = {chunk['alpha']:g}, subsets {chunk['subset_start']}–"
                    f"{chunk['subset_stop'] - 1}) {100 * (chunk.get('progress') or 0):.0f} %")
        busy_chunks = any(c.get("state") == "running" for c in study.get("chunks") or [])
        if study.get("worker") and not busy_chunks:
            doing.setdefault(study["worker"], []).append(
                f"study #{study['id']}: {study.get('stage') or 'running'} "
                f"{100 * (study.get('stage_progress') or 0):.0f} %")
    return doing


def worker_status(worker: dict, doing: list[str], now: datetime | None = None
                  ) -> tuple[str, str, str]:
    """(status chip, its CSS state, its tooltip) of one worker.

    A worker runs with ``--pool=solo``: while a task holds it, it cannot answer the broker's
    ping (``online`` is False), but its heartbeat thread keeps writing ``last_seen`` and
    ``state = online``. So a worker that fails the ping with a fresh heartbeat is *busy*,
    not offline."""
    now = now or datetime.now(UTC)
    seen = parse_time(worker.get("last_seen"))
    fresh = seen is not None and (now - seen).total_seconds() < HEARTBEAT_STALE_S
    state, online = worker.get("state"), worker.get("online")
    if state == "lost" and not online:
        return "lost", "failed", ("silent for longer than CURVSCOPE_LOST_AFTER_S: its work was "
                                  "put back on the queue")
    if online:
        return ("busy", "running", "answered the ping while running a task") if doing else (
            "idle", "online", "answered the ping; no task")
    if state == "online" and (fresh or doing):
        return "busy", "running", ("running a task, so it cannot answer the ping (solo pool); "
                                   "its heartbeat is recent")
    if state == "offline":
        return "offline", "offline", "the worker shut down"
    if online is None:
        return "unknown", "unknown", "the broker did not answer, so liveness is unknown"
    return "offline", "offline", "no ping answer and no recent heartbeat"


def study_workers(detail: dict) -> tuple[list[str], list[str]]:
    """The workers and devices a study runs on so far: its own (set when the finalize step
    starts) and those of its retraining chunks (set when each chunk starts)."""
    workers = [detail.get("worker")] if detail.get("worker") else []
    devices = [detail.get("device")] if detail.get("device") else []
    for chunk in detail.get("chunks") or []:
        if chunk.get("state") in ("running", "done") and chunk.get("worker"):
            workers.append(chunk["worker"])
            if chunk.get("device"):
                devices.append(chunk["device"])
    return list(dict.fromkeys(workers)), list(dict.fromkeys(devices))


def merge_selection(selected: list | None, shown: list[int], picked: list) -> list[int]:
    """The studies ticked on the list: ``selected`` as remembered, with the rows ``shown``
    now (ids) replaced by what their boxes hold (``picked``: one list per row), in the order
    first ticked."""
    ticked = {i for values in picked for i in (values or [])}
    shown_set = set(shown)
    kept = [i for i in (selected or []) if i not in shown_set or i in ticked]
    return kept + [i for i in shown if i in ticked and i not in kept]


# -- live telemetry of one study --------------------------------------------------------------
def test_point(value: Any, n_test: int | None) -> tuple[int | None, str | None]:
    """The test point a box or the URL asks for, and a sentence when it cannot be shown:
    ``(index, None)`` in range; ``(None, why)`` for junk or a point out of range (nothing
    is silently replaced by point 0)."""
    n = n_test or 0
    if value is None or (isinstance(value, float) and not math.isfinite(value)) or value == "":
        return None, f"Type a test point, a whole number from 0 to {n - 1}."
    index = parse_int(value)
    if index is None or (isinstance(value, float) and not float(value).is_integer()):
        return None, f"{value!r} is not a test point: type a whole number from 0 to {n - 1}."
    if not 0 <= index < n:
        return None, (f"Test point {index} does not exist: this study has {n} test points "
                      f"(0 … {n - 1}).")
    return index, None


def eta_seconds(detail: dict) -> float | None:
    """Seconds left for a running study, from its own pace so far (elapsed / progress); None
    before 2 % of progress, when the pace says nothing yet."""
    progress = detail.get("progress") or 0.0
    elapsed = (detail.get("timings") or {}).get("running_seconds")
    if detail.get("state") != "running" or not elapsed or progress < 0.02 or progress >= 1:
        return None
    return elapsed / progress * (1 - progress)


def queued_for(detail: dict) -> tuple[float | None, str]:
    """How long the study waited for a worker on its latest attempt, and what that counts
    from. An API that sends ``queued_at`` (when the study was last put in the queue: its
    creation, then each retry) counts ``timings.queued_seconds`` from it; an older one counted
    from the creation, so without ``queued_at`` (or ``timings.queued_since``) a retried
    study's wait is unknown rather than counted from its creation."""
    timings = detail.get("timings") or {}
    retried = (detail.get("attempts") or 1) > 1
    label = "since the latest attempt was queued" if retried else "since the study was created"
    if detail.get("queued_at") and timings.get("queued_seconds") is not None:
        return max(0.0, float(timings["queued_seconds"])), label
    since = parse_time(timings.get("queued_since") or detail.get("queued_at"))
    if since is not None:
        end = (parse_time(detail.get("started_at")) or parse_time(detail.get("finished_at"))
               or datetime.now(UTC))
        return max(0.0, (end - since).total_seconds()), "since the latest attempt was queued"
    if (detail.get("attempts") or 1) > 1:
        return None, "the API does not say when the retry was queued"
    return timings.get("queued_seconds"), "since the study was created"


#: failures that a second run of the same spec meets again: the spec, its data or the code is
#: the cause. The API stores only the exception's class name (``error_type``), so subclasses
#: are named here one by one: curvscope's TrainingDivergedError (a RuntimeError: the same
#: seed diverges the same way), MemoryBudgetError and DataValidationError (ValueErrors), the
#: backend's OverBudget, the CLI's UserError; and the ValueError/TypeError/LookupError/
#: ArithmeticError families of the standard library, numpy and pydantic.
DETERMINISTIC_ERRORS = frozenset({
    "ValueError", "TypeError", "KeyError", "IndexError", "LookupError", "AssertionError",
    "ArithmeticError", "ZeroDivisionError", "OverflowError", "FloatingPointError",
    "NotImplementedError", "AttributeError", "NameError", "UnboundLocalError",
    "UnicodeError", "UnicodeDecodeError", "UnicodeEncodeError", "JSONDecodeError",
    "ValidationError", "SpecError", "LinAlgError", "AxisError", "ParserError", "EmptyDataError",
    "ImportError", "ModuleNotFoundError", "RecursionError",
    "TrainingDivergedError", "MemoryBudgetError", "DataValidationError", "OverBudget",
    "UserError"})
#: name endings that say the same of classes not listed (``FooValidationError``, …)
DETERMINISTIC_SUFFIXES = ("ValidationError", "SpecError", "DivergedError", "BudgetError")
#: failures of the machine, not of the spec: a task that gave up after its retries (a
#: database away), a full disk, a lost or stopped worker, the broker, the network, the
#: operating system, a time limit, memory taken by other work
TRANSIENT_ERRORS = frozenset({
    "TaskGaveUp", "DiskFull", "WorkerLostError", "WorkerShuttingDown", "WorkerTerminate",
    "StudyStopped", "OSError", "IOError", "EnvironmentError", "ConnectionError",
    "ConnectionResetError", "ConnectionRefusedError", "ConnectionAbortedError",
    "BrokenPipeError", "TimeoutError", "InterruptedError", "BlockingIOError",
    "OperationalError", "InterfaceError", "DatabaseError", "RedisConnectionError",
    "RedisTimeoutError", "BusyLoadingError", "ReadTimeout", "ConnectTimeout",
    "TimeLimitExceeded", "SoftTimeLimitExceeded", "MemoryError", "OutOfMemoryError",
    "Terminated", "SystemExit", "KeyboardInterrupt"})


def failure_kind(error_type: str | None) -> str:
    """What a failure's ``error_type`` (the exception's class name as the API stores it; a
    dotted name counts by its last part) says a retry would meet: "deterministic" (the
    spec, data or code: it fails the same way), "transient" (the machine: a retry may
    finish) or "unknown" (anything else, e.g. a bare RuntimeError)."""
    name = (error_type or "").rsplit(".", 1)[-1].strip()
    if name in DETERMINISTIC_ERRORS or name.endswith(DETERMINISTIC_SUFFIXES):
        return "deterministic"
    if name in TRANSIENT_ERRORS:
        return "transient"
    return "unknown"


def retry_helps(detail: dict) -> tuple[bool, str]:
    """Whether Retry can change the outcome, and why (the sentence for a title or the
    page): a cancelled study, or one that failed for a transient reason (``failure_kind``:
    a task that gave up, a full disk, the broker, the operating system) or an unknown one,
    may finish; one whose failure is deterministic (a diverged training, a memory budget, a
    data set or spec the code rejects, the ValueError/TypeError family) fails the same way:
    edit it and resubmit instead. Not failed and not cancelled: nothing to retry."""
    state = detail.get("state")
    if state == "cancelled":
        return True, "Retry runs it again, reusing every finished stage."
    if state != "failed":
        return False, ""
    kind = detail.get("error_type") or "Error"
    verdict = failure_kind(kind)
    if verdict == "deterministic":
        return False, (f"A retry would fail the same way ({kind} comes from the spec, its "
                       "data or the code, not from the machine): edit the spec and resubmit.")
    if verdict == "transient":
        return True, (f"Retry runs it again, reusing every finished stage ({kind} came from "
                      "the machine, not from the spec).")
    return True, ("Retry runs it again, reusing every finished stage; if the failure came "
                  f"from the spec ({kind}), edit it and resubmit instead.")


def chunk_rows(detail: dict) -> list[dict]:
    """The retraining chunks of a study, one row each: α, subsets, state, progress, worker."""
    rows = []
    for chunk in sorted(detail.get("chunks") or [], key=lambda c: c.get("index", 0)):
        stop = (chunk.get("subset_stop") or 1) - 1
        rows.append({"index": chunk.get("index"), "alpha": chunk.get("alpha"),
                     "subsets": f"{chunk.get('subset_start')}–{stop}",
                     "state": chunk.get("state"), "progress": chunk.get("progress") or 0.0,
                     "worker": chunk.get("worker") or "–", "device": chunk.get("device") or "–",
                     "error": chunk.get("error")})
    return rows


def queue_position(sid: int, queued: list[dict]) -> int | None:
    """1-based place of study ``sid`` among the queued studies (oldest first)."""
    ids = [s["id"] for s in sorted(queued, key=lambda s: (s.get("created_at") or "", s["id"]))]
    return ids.index(sid) + 1 if sid in ids else None


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, …, 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def queue_text(position: int | None) -> str:
    """A queued study's place in words: "queued, next in line", "queued, 3rd in line"
    (``queue_position`` of the API: 1 = the next a worker takes)."""
    if not position:
        return "queued"
    return "queued, next in line" if position == 1 else f"queued, {ordinal(position)} in line"


def study_groups(detail: dict) -> list[tuple[str, str, str]]:
    """The sweeps and ladders that hold the study (the API's ``groups``), as (what, text,
    href): ("sweep", "#3 damping · inverse.damping=0.001", "/sweeps/3")."""
    out = []
    for group in detail.get("groups") or []:
        kind, gid = group.get("kind"), group.get("id")
        if kind not in ("sweep", "ladder") or gid is None:
            continue
        text = f"#{gid}" + (f" {group['name']}" if group.get("name") else "")
        if group.get("label"):
            text += f" · {group['label']}"
        out.append((kind, text, f"/{'sweeps' if kind == 'sweep' else 'ladder'}/{gid}"))
    return out


def resubmit_href(detail: dict) -> str:
    """The New study page with this study's request filled in (``/new?from=<id>``)."""
    return f"/new?from={detail['id']}"


def error_lines(detail: dict, n: int = 20) -> list[str]:
    """The last lines the API keeps of why the study failed: its error, the traceback or
    log tail when the API has one (``traceback`` / ``log_tail``), and failed chunks'
    errors."""
    lines: list[str] = []
    for key in ("traceback", "log_tail"):
        text = detail.get(key)
        if isinstance(text, list):
            text = "\n".join(map(str, text))
        if text:
            lines += str(text).splitlines()
    for chunk in detail.get("chunks") or []:
        if chunk.get("error"):
            lines.append(f"chunk {chunk.get('index')} (α = {chunk.get('alpha')}): "
                         f"{chunk['error']}")
    return lines[-n:]


# -- the run table: every metric a column, sorted and filtered here --------------------------
#: studies the list fetches at once to sort and filter on metrics the API cannot sort by
TABLE_FETCH = 500
FIXED_COLUMNS = [
    ("id", "ID", "num"), ("name", "Name", "text"), ("state", "Status", "text"),
    ("dataset", "Data set", "text"), ("model", "Model", "text"), ("preset", "Preset", "text"),
    ("test_accuracy", "Test acc.", "num"), ("created", "Created", "text"),
]
STATE_ORDER = {s: i for i, s in enumerate(["running", "queued", "failed", "cancelled",
                                           "succeeded"])}


def table_columns(studies: list[dict]) -> list[dict]:
    """Every column the run table can show: the study's own fields, the LDS of every method
    at every α (``lds:<method>:<α>``) and every method's relative residual to H
    (``residual:<method>``); ``default`` marks those shown unless the URL chooses."""
    alphas: set[str] = set()
    names: set[str] = set()
    for study in studies:
        for name, method in ((study.get("summary") or {}).get("methods") or {}).items():
            names.add(name)
            alphas |= set((method.get("lds") or {}).keys())
    headline = headline_alpha([s.get("summary") for s in studies])
    columns = [{"key": k, "label": label, "kind": kind, "group": "study",
                "default": True} for k, label, kind in FIXED_COLUMNS]
    methods = ordered_methods(names)
    for alpha in sorted(alphas, key=float):
        columns += [{"key": f"lds:{m}:{alpha}", "label": f"{m}", "title":
                     f"LDS of {m} at α = {alpha} (higher is better)", "kind": "num",
                     "group": f"LDS α = {alpha}", "default": alpha == headline}
                    for m in methods]
    columns += [{"key": f"residual:{m}", "label": m, "title":
                 f"‖H − M‖_F / ‖H‖_F of {m} (lower is closer to H)", "kind": "num",
                 "group": "residual to H", "default": False} for m in methods]
    return columns


def row_value(study: dict, key: str, names: dict[str, str] | None = None) -> Any:
    """The value of column ``key`` for one listed study (None when it has none)."""
    summary = study.get("summary") or {}
    if key.startswith("lds:"):
        _, method, alpha = key.split(":", 2)
        return (((summary.get("methods") or {}).get(method) or {}).get("lds") or {}).get(alpha)
    if key.startswith("residual:"):
        method = key.split(":", 1)[1]
        return ((summary.get("methods") or {}).get(method) or {}).get("relative_residual_to_H")
    spec = {"data": study["data"], "model": study.get("model")} if study.get("data") else None
    return {"id": study.get("id"), "name": study.get("name") or f"study {study.get('id')}",
            "state": study.get("state"), "dataset": dataset_label(spec, names),
            "model": model_label(spec), "preset": study.get("preset") or "–",
            "test_accuracy": summary.get("test_accuracy"),
            "created": study.get("created_at") or "", "progress": study.get("progress"),
            "finished": study.get("finished_at")}.get(key)


def sort_studies(studies: list[dict], sort: str | None, names=None) -> list[dict]:
    """Sorted by any column (``-`` first: descending); names case-insensitively, states in
    the order running, queued, failed, cancelled, succeeded; studies without a value last
    either way; ties by id, newest first."""
    sort = sort or "-created_at"
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    key = {"created_at": "created", "finished_at": "finished"}.get(key, key)

    def value(study):
        v = row_value(study, key, names)
        if key == "name" and isinstance(v, str):
            return v.casefold()
        if key == "state":
            return STATE_ORDER.get(v, 9)
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    present = [s for s in studies if value(s) is not None]
    missing = [s for s in studies if value(s) is None]
    present.sort(key=lambda s: -s.get("id", 0))
    present.sort(key=value, reverse=descending)
    return present + sorted(missing, key=lambda s: -s.get("id", 0))


FILTER_OPS = {"ge": "≥", "le": "≤"}


def filter_studies(studies: list[dict], key: str | None, op: str | None, threshold: Any,
                   names=None) -> list[dict]:
    """Studies whose column ``key`` is ≥ (``ge``) or ≤ (``le``) ``threshold``; all of them
    when the filter is incomplete. A study without the value does not pass."""
    try:
        limit = float(threshold)
    except (TypeError, ValueError):
        return studies
    if not key or op not in FILTER_OPS or not math.isfinite(limit):
        return studies
    out = []
    for study in studies:
        v = row_value(study, key, names)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and (
                v >= limit if op == "ge" else v <= limit):
            out.append(study)
    return out


def sweep_of(name: str | None) -> str | None:
    """The sweep a study belongs to, from the name POST /sweeps gives each of its studies
    (``'<sweep name>: field=value, …'``)."""
    if not name or ": " not in name:
        return None
    head, tail = name.split(": ", 1)
    return head if "=" in tail else None


def group_sweeps(studies: list[dict]) -> list[tuple[str | None, list[dict]]]:
    """The studies in their order, those of one sweep gathered where its first one stands:
    [(sweep name or None, studies)]."""
    groups: list[tuple[str | None, list[dict]]] = []
    index: dict[str, int] = {}
    for study in studies:
        sweep = sweep_of(study.get("name"))
        if sweep is None:
            groups.append((None, [study]))
        elif sweep in index:
            groups[index[sweep]][1].append(study)
        else:
            index[sweep] = len(groups)
            groups.append((sweep, [study]))
    return groups


def chosen_columns(columns: list[dict], chosen: Any) -> list[dict]:
    """The columns to show: the URL's (``cols``, in the table's order) else the defaults;
    ID and name always."""
    keys = set(parse_list(chosen))
    if not keys:
        return [c for c in columns if c["default"]]
    return [c for c in columns if c["key"] in keys or c["key"] in ("id", "name")]


def studies_csv(studies: list[dict], columns: list[dict], names=None) -> str:
    """The run table as CSV: one row per study, one column per chosen column (numbers in
    full precision)."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([c["key"] for c in columns])
    for study in studies:
        row = []
        for column in columns:
            v = row_value(study, column["key"], names)
            row.append("" if v is None else repr(v) if isinstance(v, float) else v)
        writer.writerow(row)
    return out.getvalue()


def resubmit_spec(study: dict) -> dict:
    """The spec to fill the New study form with for *Edit and resubmit*: the study's
    resolved spec, with the data set as the request named it (``dataset:<id>``, not the
    server's path to the stored file) and without its name (a new study gets its own)."""
    import copy

    spec = copy.deepcopy(study.get("spec") or {})
    requested = ((study.get("request") or {}).get("data") or {}).get("path")
    if requested is not None and isinstance(spec.get("data"), dict):
        spec["data"]["path"] = requested
    if spec.get("name"):
        spec["name"] = f"{spec['name']} (edited)"[:200]
    return spec
