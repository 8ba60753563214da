"""The study page's builders on the golden results.json (pure functions, no server): the
note next to the LDS chart where unpaired whiskers overlap but the paired test differs."""

import copy
import json
from pathlib import Path

import pytest

GOLDEN = json.loads((Path(__file__).parents[1] / "fixtures" / "golden" / "results.json")
                    .read_text())


@pytest.fixture(scope="module")
def page():
    from frontend.app import build_dash

    build_dash()  # the pages register themselves with the app
    from frontend.pages import study

    return study


def test_lds_note_names_the_links_whose_whiskers_overlap_but_the_paired_test_differs(page):
    """Golden study at α = 0.5: GGN's interval [0.110, 0.412] overlaps GGN-blockdiag's
    [−0.168, 0.298], yet the paired difference +0.182 [+0.012, +0.344] excludes 0 (≥); the
    other links are level (≈) and get no note."""
    gg, bd = (GOLDEN["methods"][m]["lds"]["0.5"] for m in ("GGN", "GGN-blockdiag"))
    assert gg["ci_low"] <= bd["ci_high"] and bd["ci_low"] <= gg["ci_high"]   # they overlap
    assert page.lds_note(GOLDEN) == (
        "Overlapping whiskers do not mean two methods are level: the paired test (the "
        "verdict above) finds GGN > GGN-blockdiag at α = 0.5 (paired difference +0.182 "
        "[+0.012, +0.344]).")


def test_no_lds_note_where_the_paired_test_is_level_or_the_whiskers_part(page):
    level = copy.deepcopy(GOLDEN)
    for pair in level["groundtruth"]["hierarchy"]["0.5"]["pairs"]:
        pair["verdict"] = "≈"
    assert page.lds_note(level) is None
    apart = copy.deepcopy(GOLDEN)                    # whiskers that no longer overlap
    apart["methods"]["GGN-blockdiag"]["lds"]["0.5"].update(ci_low=-0.3, ci_high=0.1)
    assert page.lds_note(apart) is None
    broken = copy.deepcopy(GOLDEN)                   # a link that breaks: "<" in the note
    pair = next(p for p in broken["groundtruth"]["hierarchy"]["0.5"]["pairs"]
                if p["higher"] == "H")
    pair.update(verdict="<", value=-0.03, ci_low=-0.05, ci_high=-0.01)
    note = page.lds_note(broken)
    assert "H < GGN at α = 0.5 (paired difference -0.030 [-0.050, -0.010])" in note
    assert "GGN > GGN-blockdiag" in note
