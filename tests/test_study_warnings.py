"""The eigenvalues-dropped warning, in-process: a tiny iris study whose inverse rule ``drop``
really drops eigenvalues of the indefinite Hessian (e + λ at or below ε·max|e + λ|) records
the count in ``methods.H.inverse`` and says it in ``results.warnings``; the dashboard turns
that warning into a banner."""

import re

from curvscope.spec import resolve_spec
from curvscope.study import run_study


def _spec():
    return resolve_spec({
        "model": {"hidden": [8]}, "training": {"epochs": 3, "lr": 0.05},
        "data": {"name": "iris"}, "curvature": {"methods": ["H", "GGN"]},
        "inverse": {"rule": "drop", "damping": 0.0}, "groundtruth": {"enabled": False}})


def test_the_drop_rule_drops_eigenvalues_and_results_say_how_many():
    from frontend.app import build_dash
    from frontend.figures.verdict import study_warnings

    build_dash()  # the pages register themselves with the app
    from frontend.pages.study import warning_banners

    results = run_study(_spec()).results
    h = results["methods"]["H"]["inverse"]
    assert h["n_dropped"] > 0                        # H is indefinite after 3 epochs
    assert h["rule"] == "drop" and h["n_dropped"] + h["n_inverted"] == results["n_params"]
    dropped = [w for w in results["warnings"] if w["code"] == "eigenvalues_dropped"]
    by_method = {w["method"]: w for w in dropped}
    assert "H" in by_method and by_method["H"]["severity"] == "info"
    message = by_method["H"]["message"]
    assert f"dropped {h['n_dropped']} of {h['n_dropped'] + h['n_inverted']} eigenvalues of H" \
        in message and "'drop'" in message
    for name, entry in results["methods"].items():  # a warning exactly where a count > 0
        assert (name in by_method) == (entry["inverse"]["n_dropped"] > 0), name

    shown = [w for w in study_warnings(results) if w["code"] == "eigenvalues_dropped"]
    assert [w["message"] for w in shown] == [w["message"] for w in dropped]  # no duplicate
    banners = [b for b in warning_banners(results)
               if getattr(b, "data-code", None) == "eigenvalues_dropped"]
    assert len(banners) == len(dropped)
    texts = {b.children[0].children: b.children[1].children for b in banners}
    assert texts["eigenvalues dropped (H): "] == by_method["H"]["message"]
    assert "alert-info" in banners[0].className and banners[0].role == "alert"
    assert re.search(rf"dropped {h['n_dropped']} of {h['n_dropped'] + h['n_inverted']} "
                     "eigenvalues of H", texts["eigenvalues dropped (H): "])
