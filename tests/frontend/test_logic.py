"""The pages' pure helpers: URL state, list rows, the spec form from the API's schema,
estimates."""

import json

import pytest

from frontend import logic


def test_formatting():
    assert logic.fmt_number(None) == "–"
    assert logic.fmt_number(float("nan")) == "–"
    assert logic.fmt_number(0.54321) == "0.543"
    assert logic.fmt_number(1234567) == "1,234,567"
    assert logic.fmt_number(1.5e-6) == "1.50e-06"
    assert logic.fmt_bytes(3107872800) == "2.9 GiB"
    assert logic.fmt_bytes(512) == "512 B"
    assert logic.fmt_seconds(0.25) == "250 ms"
    assert logic.fmt_seconds(90) == "90.0 s"
    assert logic.fmt_seconds(600) == "10.0 min"
    assert logic.fmt_time("2026-11-28T16:43:08.57Z") == "2026-11-28 16:43 UTC"
    assert logic.fmt_time(None) == "–" and logic.fmt_time("junk") == "–"
    assert logic.fmt_percent(0.972) == "97 %"


def test_url_state_parsing():
    assert logic.parse_int("12") == 12
    assert logic.parse_int("x", 3) == 3
    assert logic.parse_int("500", 0, lo=0, hi=179) == 179
    assert logic.parse_ids("3,5, 7,3,x,-1") == [3, 5, 7]
    assert logic.parse_ids(["2", 4]) == [2, 4]
    assert logic.parse_ids(None) == []
    assert logic.parse_list("H, GGN,,K-FAC") == ["H", "GGN", "K-FAC"]
    assert logic.pick("0.5", ["0.3", "0.5"]) == "0.5"
    assert logic.pick(0.5, ["0.5"]) == "0.5"
    assert logic.pick("0.4", ["0.3", "0.5"], "0.3") == "0.3"
    assert logic.query_string({"ids": [1, 2], "param": None, "alpha": "0.5"}) == \
        "?ids=1,2&alpha=0.5"
    assert logic.query_string({}) == ""


def test_url_sync_js_names_every_key_and_defaults():
    js = logic.url_sync_js(["method", "block"], {"block": "__whole__"})
    assert js.startswith("function(v0, v1)")
    assert json.dumps(["method", "block"]) in js
    assert '"block": "__whole__"' in js
    assert "history.replaceState" in js
    with_options = logic.url_sync_js(["methods", "k"], None, {"methods": 2})
    assert with_options.startswith("function(v0, v1, v2)")
    assert 'const allOf = {"methods": 2}' in with_options


def test_list_params_normalise_what_the_url_says():
    params = logic.list_params("running,bogus,queued", " paper ", "quick", "nope", "0")
    assert params["state"] == ["running", "queued"]
    assert params["q"] == "paper" and params["preset"] == "quick"
    assert params["sort"] == "-created_at" and params["page"] == 1
    args = logic.api_list_args({**params, "page": 3})
    assert args["offset"] == 2 * logic.PAGE_SIZE and args["limit"] == logic.PAGE_SIZE
    assert logic.page_count(0) == 1 and logic.page_count(41) == 3


def _study(sid, state="succeeded", lds=None, **extra):
    summary = None
    if lds is not None:
        summary = {"methods": {m: {"lds": v} for m, v in lds.items()}, "n_params": 610,
                   "test_accuracy": 0.93}
    return {"id": sid, "name": f"s{sid}", "state": state, "stage": None, "progress": 1.0,
            "preset": "quick", "summary": summary, "created_at": "2026-11-28T10:00:00Z",
            "error": None, **extra}


def test_list_rows_headline_lds_data_set_and_model():
    studies = [_study(1, lds={"K-FAC": {"0.5": 0.28, "0.7": 0.3}, "H": {"0.5": 0.2}},
                      data={"name": "digits"}, model={"hidden": [64, 32], "activation": "gelu"}),
               _study(2, "running", progress=0.4),
               _study(3, lds={"identity": {"0.3": 0.1}},
                      data={"name": "gaussian_mixture", "n_samples": 600, "n_features": 10,
                            "n_classes": 3}, model={"hidden": [], "activation": "tanh"})]
    rows, methods, alpha = logic.list_rows(studies)
    assert alpha == "0.5"
    assert methods == ["H", "K-FAC", "identity"]        # the chain's order
    assert rows[0]["lds"] == {"H": 0.2, "K-FAC": 0.28, "identity": None}
    assert rows[0]["dataset"] == "digits" and rows[0]["model"] == "MLP 64→32 gelu"
    assert rows[1]["dataset"] == "–" and rows[1]["lds"] == {m: None for m in methods}
    assert rows[2]["dataset"].startswith("gaussian mixture (600×10")
    assert rows[2]["model"] == "MLP linear tanh"
    assert logic.any_active(studies) and not logic.any_active([studies[0]])
    assert logic.headline_alpha([None, {"methods": {"H": {"lds": {"0.9": 1, "0.3": 2}}}}]) \
        == "0.3"


def test_study_meta_and_nearest_k():
    results = {
        "methods": {"K-FAC": {"eigenbasis_overlap_by_k": {"l0": {"1": 0.1, "10": 0.3},
                                                          "l1": {"1": 0.2, "5": 0.3}}},
                    "H": {}},
        "blocks": [{"name": "l0"}, {"name": "l1"}],
        "groundtruth": {"alphas": [0.5, 0.7]}, "n_test": 180, "n_train": 1617,
        "spec": {"curvature": {"eigenbasis_k": 10}, "data": {"name": "digits"}},
    }
    detail = {"id": 4, "state": "succeeded", "spec_hash": "abc", "finished_at": "t"}
    meta = logic.study_meta(detail, results)
    assert meta["ready"] and meta["methods"] == ["H", "K-FAC"]
    assert meta["alphas"] == ["0.5", "0.7"] and meta["ks"] == [1, 5, 10]
    assert meta["k"] == 10 and meta["has_images"] and meta["has_groundtruth"]
    assert logic.study_meta({**detail, "state": "running"}, None) == {
        "id": 4, "state": "running", "spec_hash": "abc", "finished_at": "t", "ready": False}
    assert logic.nearest_k(None, [1, 5, 10], 10) == 10
    assert logic.nearest_k("7", [1, 5, 10], 10) in (5, 10)
    assert logic.nearest_k("1000", [1, 5, 10], 10) == 10
    assert logic.nearest_k(3, [], 10) is None


SCHEMA = {
    "properties": {
        "name": {"anyOf": [{"maxLength": 200, "type": "string"}, {"type": "null"}],
                 "default": None, "description": "A label for people.", "title": "Name"},
        "training": {"$ref": "#/$defs/TrainingSpec"},
        "curvature": {"$ref": "#/$defs/CurvatureSpec"},
        "data": {"$ref": "#/$defs/DataSpec"},
        "compute": {"$ref": "#/$defs/ComputeSpec"},
    },
    "$defs": {
        "TrainingSpec": {"type": "object", "description": "How the model is trained.",
                         "properties": {
                             "epochs": {"type": "integer", "minimum": 1, "maximum": 10000,
                                        "default": 100, "title": "Epochs"},
                             "lr": {"type": "number", "exclusiveMinimum": 0.0,
                                    "maximum": 10.0, "default": 0.01},
                             "checkpoints": {"type": "array", "items": {"type": "integer"},
                                             "maxItems": 1000},
                             "schedule": {"type": "string", "enum": ["constant", "cosine"]}}},
        "CurvatureSpec": {"type": "object", "properties": {
            "methods": {"type": "array", "items": {"type": "string"}, "minItems": 1}}},
        "DataSpec": {"type": "object", "properties": {
            "label_column": {"anyOf": [{"type": "integer", "minimum": 0},
                                       {"type": "string"}, {"type": "null"}]},
            "standardize": {"type": "boolean", "default": True}}},
        "ComputeSpec": {"type": "object", "properties": {
            "memory_budget_gib": {"anyOf": [{"exclusiveMinimum": 0, "maximum": 100000,
                                             "type": "number"}, {"type": "null"}]}}},
    },
}


def test_form_sections_from_the_schema():
    sections = logic.form_sections(SCHEMA)
    assert [s["name"] for s in sections] == ["study", "training", "curvature", "data",
                                             "compute"]
    fields = {f["path"]: f for s in sections for f in s["fields"]}
    assert fields["name"]["kind"] == "str" and fields["name"]["nullable"]
    assert fields["training.epochs"]["kind"] == "int"
    assert fields["training.epochs"]["bounds"] == "1 ≤ x ≤ 10000"
    assert fields["training.lr"]["bounds"] == "0.0 < x ≤ 10.0"
    assert fields["training.checkpoints"]["kind"] == "list_int"
    assert fields["training.checkpoints"]["bounds"] == "0 to 1000 items"
    assert fields["training.schedule"]["kind"] == "enum"
    assert fields["curvature.methods"]["kind"] == "methods"
    assert fields["data.label_column"]["kind"] == "int_or_str"
    assert fields["data.label_column"]["nullable"]
    assert fields["data.standardize"]["kind"] == "bool"
    assert fields["compute.memory_budget_gib"]["kind"] == "float"
    assert fields["compute.memory_budget_gib"]["bounds"] == "0 < x ≤ 100000"
    assert sections[1]["description"] == "How the model is trained."


def test_parse_field_sends_what_it_cannot_parse_for_the_api_to_explain():
    assert logic.parse_field("int", "20") == 20
    assert logic.parse_field("int", "1e3") == 1000
    assert logic.parse_field("int", "2.5") == 2.5          # the API says: not an integer
    assert logic.parse_field("int", "many") == "many"
    assert logic.parse_field("float", "1e-4") == 1e-4
    assert logic.parse_field("float", "", nullable=True) is None
    assert logic.parse_field("list_int", "64, 32") == [64, 32]
    assert logic.parse_field("list_int", "") == []
    assert logic.parse_field("list_float", "0.3; 0.5") == [0.3, 0.5]
    assert logic.parse_field("list_int", "64, x") == [64, "x"]
    assert logic.parse_field("int_or_str", "3") == 3
    assert logic.parse_field("int_or_str", "label") == "label"
    assert logic.parse_field("bool", False) is False
    assert logic.parse_field("methods", ["H"]) == ["H"]
    assert logic.parse_field("dataset", None) is None
    assert logic.parse_field("dataset", "dataset:3") == "dataset:3"
    assert logic.value_to_text("list_int", [64, 32]) == "64, 32"
    assert logic.value_to_text("float", None) == ""


def test_form_config_sends_the_preset_and_only_what_differs():
    fields = [{"path": "training.epochs", "kind": "int", "nullable": False},
              {"path": "model.hidden", "kind": "list_int", "nullable": False},
              {"path": "name", "kind": "str", "nullable": True}]
    base = {"training": {"epochs": 20}, "model": {"hidden": [16, 16]}, "name": "quick"}
    assert logic.form_config("quick", fields, ["20", "16, 16", "quick"], base) == \
        {"preset": "quick"}
    assert logic.form_config("quick", fields, ["0", "8", "quick"], base) == {
        "preset": "quick", "training": {"epochs": 0}, "model": {"hidden": [8]}}
    assert logic.form_config(None, fields[:1], ["5"], None) == {"training": {"epochs": 5}}


def test_split_errors_routes_messages_to_their_fields():
    errors = [{"field": "training.epochs", "message": "must be ≥ 1"},
              {"field": "groundtruth.alphas[1]", "message": "must be < 1"},
              {"field": "(body)", "message": "bad"}]
    per_field, others = logic.split_errors(errors, ["training.epochs", "groundtruth.alphas"])
    assert per_field == {"training.epochs": "must be ≥ 1",
                         "groundtruth.alphas": "[1]: must be < 1"}
    assert others == [{"field": "(body)", "message": "bad"}]


def test_estimates():
    estimate = {"n_params": 6570, "n_train": 1617, "n_test": 180,
                "dense_memory_bytes": 3107872800, "memory_budget_bytes": 12638031872,
                "n_retrained_models": 2000, "retraining_gflop": 7645.5, "dense_gflop": 4231.9}
    rows = dict(logic.estimate_rows(estimate))
    assert rows["dense curvature memory"] == "2.9 GiB (25 % of the 11.8 GiB budget)"
    assert rows["retrained models"] == "2,000" and rows["compute"] == "11,877 GFLOP"
    seconds, how = logic.time_estimate(estimate)
    assert seconds == pytest.approx(11877.4 / logic.DEFAULT_GFLOP_PER_S)
    assert "assuming" in how
    seconds, how = logic.time_estimate(estimate, [(100.0, 50.0), (2000.0, 1000.0), (0, 5)])
    assert seconds == pytest.approx(11877.4 * 0.5) and "2 finished studies" in how
    # small studies are mostly start-up: 20 s each. The paper study must not be scaled up
    # from their seconds per GFLOP (that said 4 h for 18 min)
    quick = [(1.0, 20.0), (2.0, 21.0), (1.5, 19.0)]
    seconds, how = logic.time_estimate(estimate, quick)
    assert seconds == pytest.approx(20.0 + 11877.4 / logic.DEFAULT_GFLOP_PER_S, rel=0.01)
    assert "start-up" in how and "extrapolated" in how
    measured = [(1.0, 20.1), (100.0, 30.0), (1000.0, 120.0)]       # 10 GFLOP/s + 20 s
    seconds, how = logic.time_estimate(estimate, measured)
    assert seconds == pytest.approx(20 + 1187.7, rel=0.02) and "measured 10.0 GFLOP/s" in how
    assert logic.time_estimate({}) == (None, "no estimate")


def test_sweep_grid_reads_each_value_as_its_field_does():
    fields = [{"path": "inverse.damping", "kind": "float", "nullable": False},
              {"path": "model.hidden", "kind": "list_int", "nullable": False},
              {"path": "curvature.methods", "kind": "methods", "nullable": False},
              {"path": "training.seed", "kind": "int", "nullable": False}]
    grid, count, problems = logic.sweep_grid(fields, [
        ("inverse.damping", "1e-4 | 0.001|0.01 "), ("model.hidden", "32, 32 | 64"),
        (None, "ignored"), ("training.seed", "")])
    assert grid == {"inverse.damping": [1e-4, 1e-3, 1e-2], "model.hidden": [[32, 32], [64]]}
    assert count == 6 and problems == ["training.seed: give its values, separated by |"]
    _, count, problems = logic.sweep_grid(fields, [("curvature.methods", "H"),
                                                   ("inverse.damping", "1"),
                                                   ("inverse.damping", "2"), ("nope", "1")])
    assert count == 1 and problems == ["curvature.methods: cannot be swept here",
                                       "inverse.damping: chosen twice",
                                       "nope: cannot be swept here"]
    assert logic.sweep_grid(fields, []) == ({}, 0, [])


def test_a_busy_solo_worker_is_busy_with_its_chunk_not_offline():
    """issue 12: a worker that cannot answer the ping (solo pool, busy) but whose heartbeat
    is fresh shows *busy* and the chunk it runs (the study's own worker is unset then)."""
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    recent = (now - timedelta(seconds=20)).isoformat()
    detail = {"id": 7, "state": "running", "worker": None, "stage": "groundtruth/0.5",
              "chunks": [{"index": 2, "alpha": 0.5, "subset_start": 40, "subset_stop": 60,
                          "state": "running", "progress": 0.4, "worker": "w1@h",
                          "device": "cuda:0 (H200)"},
                         {"index": 3, "alpha": 0.5, "subset_start": 60, "subset_stop": 80,
                          "state": "pending", "progress": 0.0, "worker": None}]}
    doing = logic.worker_tasks([detail])
    assert doing == {"w1@h": ["study #7: retraining chunk 2 (α = 0.5, subsets 40–59) 40 %"]}
    busy = {"hostname": "w1@h", "online": False, "state": "online", "last_seen": recent}
    assert logic.worker_status(busy, doing["w1@h"], now)[:2] == ("busy", "running")
    assert logic.worker_status(busy, [], now)[0] == "busy"          # heartbeat alone
    stale = {**busy, "last_seen": (now - timedelta(hours=1)).isoformat()}
    assert logic.worker_status(stale, [], now)[0] == "offline"
    assert logic.worker_status({**busy, "online": True}, [], now)[0] == "idle"
    assert logic.worker_status({**busy, "state": "lost"}, [], now)[0] == "lost"
    assert logic.worker_status({**busy, "state": "offline"}, [], now)[0] == "offline"
    assert logic.study_workers(detail) == (["w1@h"], ["cuda:0 (H200)"])
    final = {"id": 8, "state": "running", "worker": "w2@h", "stage": "curvature/H",
             "stage_progress": 0.5, "chunks": []}
    assert logic.worker_tasks([final]) == {"w2@h": ["study #8: curvature/H 50 %"]}


def test_selection_survives_a_refresh_and_other_pages():
    assert logic.merge_selection([], [1, 2, 3], [[1], [], [3]]) == [1, 3]
    # the list re-rendered (a poll): the same boxes, the same ticks
    assert logic.merge_selection([1, 3], [1, 2, 3], [[1], [], [3]]) == [1, 3]
    # page 2 shown: page 1's ticks are kept
    assert logic.merge_selection([1, 3], [21, 22], [[], [22]]) == [1, 3, 22]
    assert logic.merge_selection([1, 3, 22], [1, 2, 3], [[], [], [3]]) == [3, 22]


def _row(sid, name, lds=None, residual=None, accuracy=None, state="succeeded", **extra):
    methods = {m: {"lds": v, "relative_residual_to_H": (residual or {}).get(m)}
               for m, v in (lds or {}).items()}
    return {"id": sid, "name": name, "state": state, "progress": 1.0, "preset": "quick",
            "created_at": f"2026-12-01T10:0{sid}:00Z", "data": {"name": "digits"},
            "model": {"hidden": [8]},
            "summary": {"methods": methods, "test_accuracy": accuracy} if lds else None,
            **extra}


def test_run_table_sorts_and_filters_on_any_metric():
    studies = [_row(1, "beta", {"K-FAC": {"0.5": 0.2, "0.7": 0.4}}, {"K-FAC": 0.9}, 0.8),
               _row(2, "Alpha", {"K-FAC": {"0.5": 0.3}, "H": {"0.5": 0.5}}, {"K-FAC": 0.7},
                    0.95),
               _row(3, "gamma", state="running"),
               _row(4, "alpha 2", {"K-FAC": {"0.5": float("nan")}}, None, 0.5)]
    columns = logic.table_columns(studies)
    keys = [c["key"] for c in columns]
    assert {"lds:K-FAC:0.5", "lds:K-FAC:0.7", "lds:H:0.5", "residual:K-FAC"} <= set(keys)
    assert [c["key"] for c in columns if c["default"] and c["key"].startswith("lds")] == [
        "lds:H:0.5", "lds:K-FAC:0.5"]                            # the headline α only
    by = lambda sort: [s["id"] for s in logic.sort_studies(studies, sort)]  # noqa: E731
    assert by("-lds:K-FAC:0.5") == [2, 1, 4, 3]          # NaN and missing last either way
    assert by("lds:K-FAC:0.5") == [1, 2, 4, 3]
    assert by("residual:K-FAC") == [2, 1, 4, 3]
    assert by("name") == [2, 4, 1, 3]                    # Alpha, alpha 2, beta, gamma
    assert by("-name") == [3, 1, 4, 2]
    assert by("-test_accuracy") == [2, 1, 4, 3]
    assert by("-created_at") == [4, 3, 2, 1]
    kept = logic.filter_studies(studies, "lds:K-FAC:0.5", "ge", "0.25")
    assert [s["id"] for s in kept] == [2]
    assert [s["id"] for s in logic.filter_studies(studies, "lds:K-FAC:0.5", "le", 0.25)] == [1]
    assert logic.filter_studies(studies, "lds:K-FAC:0.5", "ge", "") == studies
    shown = logic.chosen_columns(columns, "residual:K-FAC,lds:K-FAC:0.7")
    assert [c["key"] for c in shown] == ["id", "name", "lds:K-FAC:0.7", "residual:K-FAC"]
    csv = logic.studies_csv(logic.sort_studies(studies, "id"), shown).splitlines()
    assert csv[0] == "id,name,lds:K-FAC:0.7,residual:K-FAC"
    assert csv[1] == "1,beta,0.4,0.9" and csv[3] == "3,gamma,,"


def test_sweeps_are_grouped_where_their_first_study_stands():
    studies = [_row(5, "damping: inverse.damping=0.01"), _row(4, "other"),
               _row(3, "damping: inverse.damping=0.001"), _row(2, "note: not a sweep"),
               _row(1, "width × depth: model.hidden=[64], training.epochs=5")]
    groups = logic.group_sweeps(studies)
    assert [(g, [s["id"] for s in members]) for g, members in groups] == [
        ("damping", [5, 3]), (None, [4]), (None, [2]), ("width × depth", [1])]


def test_uploaded_data_sets_by_name_not_by_server_path():
    spec = {"data": {"name": "file", "path": "/srv/curvscope/datasets/0123456789abcdef.csv"}}
    names = logic.dataset_names([{"id": 3, "name": "iris.csv",
                                  "sha256": "0123456789abcdef" + "0" * 48}])
    assert logic.dataset_label(spec, names) == "iris.csv (#3)"
    assert "/srv" not in logic.dataset_label(spec)
    assert logic.dataset_label({"data": {"name": "file", "path": "dataset:7"}}) == \
        "uploaded data set #7"


def test_live_telemetry_helpers():
    detail = {"id": 9, "state": "running", "progress": 0.25,
              "timings": {"running_seconds": 60.0, "queued_seconds": 5.0}, "attempts": 1}
    assert logic.eta_seconds(detail) == pytest.approx(180.0)
    assert logic.eta_seconds({**detail, "progress": 0.01}) is None
    assert logic.queued_for(detail) == (5.0, "since the study was created")
    retried = {**detail, "attempts": 2}
    assert logic.queued_for(retried)[0] is None                  # not from the creation
    since = {**retried, "started_at": "2026-12-01T10:05:00Z",
             "timings": {"queued_since": "2026-12-01T10:04:30Z"}}
    assert logic.queued_for(since) == (30.0, "since the latest attempt was queued")
    queued = [{"id": 4, "created_at": "2026-12-01T10:00:00Z"},
              {"id": 9, "created_at": "2026-12-01T10:02:00Z"},
              {"id": 6, "created_at": "2026-12-01T10:01:00Z"}]
    assert logic.queue_position(9, queued) == 3 and logic.queue_position(1, queued) is None
    assert logic.retry_helps({"state": "failed", "error_type": "ValueError"})[0] is False
    assert logic.retry_helps({"state": "failed", "error_type": "TaskGaveUp"})[0] is True
    assert logic.retry_helps({"state": "cancelled"})[0] is True
    assert logic.retry_helps({"state": "succeeded"})[0] is False
    failed = {"traceback": "Traceback\n  File x\nValueError: bad", "chunks": [
        {"index": 1, "alpha": 0.5, "error": "boom"}]}
    assert logic.error_lines(failed)[-2:] == ["ValueError: bad", "chunk 1 (α = 0.5): boom"]
    assert logic.resubmit_href({"id": 9}) == "/new?from=9"


def test_an_out_of_range_test_point_is_said_not_replaced():
    assert logic.test_point(5, 180) == (5, None)
    assert logic.test_point("5", 180) == (5, None)
    index, why = logic.test_point(500, 180)
    assert index is None and "does not exist" in why and "0 … 179" in why
    assert logic.test_point(float("nan"), 180)[0] is None
    assert logic.test_point("x", 180)[0] is None
    assert logic.test_point(None, 180)[0] is None
    js = logic.url_sync_js(["test"])
    assert "!isFinite(v)" in js                                   # never test=NaN


def test_retry_is_offered_only_where_a_retry_can_change_the_outcome():
    """issue 12: the API stores the exception's class name only, so curvscope's own
    subclasses (TrainingDivergedError of RuntimeError, MemoryBudgetError and
    DataValidationError of ValueError) must count as deterministic by name; the machine's
    failures (a task that gave up, a full disk, the broker, the OS) and a cancel may finish."""
    def failed(kind):
        return logic.retry_helps({"state": "failed", "error_type": kind})

    for kind in ("TrainingDivergedError", "MemoryBudgetError", "DataValidationError",
                 "OverBudget", "ValidationError", "ValueError", "TypeError", "KeyError",
                 "ZeroDivisionError", "LinAlgError", "UserError",
                 "curvscope.training.trainer.TrainingDivergedError", "FooValidationError"):
        helps, why = failed(kind)
        assert helps is False, kind
        assert why.startswith("A retry would fail the same way") and "resubmit" in why
        assert logic.failure_kind(kind) == "deterministic"
    for kind in ("TaskGaveUp", "DiskFull", "WorkerLostError", "OSError", "ConnectionError",
                 "TimeoutError", "OperationalError", "RedisConnectionError", "MemoryError",
                 "OutOfMemoryError", "SoftTimeLimitExceeded"):
        helps, why = failed(kind)
        assert helps is True and "from the machine" in why, kind
        assert logic.failure_kind(kind) == "transient"
    for kind in ("RuntimeError", "Error", None):                 # unknown: offered, hedged
        helps, why = failed(kind)
        assert helps is True and "edit it and resubmit instead" in why
        assert logic.failure_kind(kind) == "unknown"
    assert logic.retry_helps({"state": "cancelled", "error_type": "ValueError"})[0] is True
    for state in ("succeeded", "running", "queued"):
        assert logic.retry_helps({"state": state, "error_type": "TaskGaveUp"}) == (False, "")


def test_every_exception_the_science_library_and_backend_define_is_known_to_retry_helps():
    """The subclasses of ValueError/TypeError/LookupError/ArithmeticError in curvscope and
    the backend (a bad spec or data set) and TrainingDivergedError are deterministic by
    their stored name, so a new one cannot silently get a Retry button."""
    import importlib
    import pkgutil

    import backend
    import curvscope

    classes = set()
    for package in (curvscope, backend):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".migrations" in info.name:
                continue
            try:
                module = importlib.import_module(info.name)
            except Exception:  # noqa: BLE001 (an optional dependency: not this test's concern)
                continue
            for value in vars(module).values():
                if isinstance(value, type) and issubclass(value, Exception) and \
                        value.__module__ == module.__name__:
                    classes.add(value)
    from curvscope.training.trainer import TrainingDivergedError

    family = (ValueError, TypeError, LookupError, ArithmeticError, TrainingDivergedError)
    not_failures = {"StudyNotFound"}   # backend.crud's 404 of the API: never a study's failure
    deterministic = {c.__name__ for c in classes if issubclass(c, family)} - not_failures
    assert {"TrainingDivergedError", "MemoryBudgetError", "DataValidationError",
            "OverBudget"} <= deterministic
    assert {k for k in deterministic if logic.failure_kind(k) != "deterministic"} == set()


def test_chunk_rows_one_row_per_chunk_in_index_order():
    detail = {"chunks": [
        {"index": 1, "alpha": 0.5, "subset_start": 3, "subset_stop": 6, "state": "running",
         "progress": 0.4, "worker": "w@h", "device": "cpu", "error": None},
        {"index": 0, "alpha": 0.5, "subset_start": 0, "subset_stop": 3, "state": "done",
         "progress": 1.0, "worker": "w@h", "device": "cuda:0", "error": None},
        {"index": 2, "alpha": 0.7, "subset_start": 0, "subset_stop": 1, "state": "pending",
         "progress": None, "worker": None, "device": None, "error": "lost"}]}
    rows = logic.chunk_rows(detail)
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert [r["subsets"] for r in rows] == ["0–2", "3–5", "0–0"]   # stop is exclusive
    assert [r["state"] for r in rows] == ["done", "running", "pending"]
    assert [r["progress"] for r in rows] == [1.0, 0.4, 0.0]
    assert [(r["worker"], r["device"]) for r in rows] == [("w@h", "cuda:0"), ("w@h", "cpu"),
                                                          ("–", "–")]
    assert [r["alpha"] for r in rows] == [0.5, 0.5, 0.7] and rows[2]["error"] == "lost"
    assert logic.chunk_rows({}) == [] and logic.chunk_rows({"chunks": None}) == []


def test_resubmit_spec_names_the_uploaded_data_set_and_marks_the_name():
    study = {"id": 5, "spec": {"name": "mine", "data": {"name": "file",
                                                        "path": "/srv/data/ab12.csv"},
                               "model": {"hidden": [8]}, "inverse": {"damping": 0.01}},
             "request": {"preset": "quick", "data": {"name": "file", "path": "dataset:3"}}}
    spec = logic.resubmit_spec(study)
    assert spec == {"name": "mine (edited)", "data": {"name": "file", "path": "dataset:3"},
                    "model": {"hidden": [8]}, "inverse": {"damping": 0.01}}
    assert study["spec"]["data"]["path"] == "/srv/data/ab12.csv"       # not changed in place
    assert study["spec"]["name"] == "mine"
    plain = {"spec": {"name": None, "data": {"name": "digits", "path": None}},
             "request": {"preset": "quick"}}
    assert logic.resubmit_spec(plain) == plain["spec"]                  # nothing to rename
    assert logic.resubmit_spec({"spec": {"name": "x" * 200}})["name"] == "x" * 200  # capped
    assert logic.resubmit_spec({}) == {}
