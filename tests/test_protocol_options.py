"""The official code's protocol choices as spec options (issue 9): typed, bounded, described,
in the hash, and together in the paper-code preset."""

import pytest
from pydantic import ValidationError

from curvscope.spec import PRESETS, StudySpec, known_pitfalls, resolve_spec

OPTIONS = {  # (section, field): a non-default value
    ("data", "split"): "per_loader",
    ("curvature", "fisher_types"): {"K-FAC": "mc"},
    ("curvature", "mc_replicates"): 3,
    ("inverse", "kfac_damping"): "heuristic",
    ("inverse", "rule"): "drop_absolute",
    ("groundtruth", "lds_summary"): "interval_midpoint",
}


def test_options_are_described_in_the_schema_and_change_the_hash():
    schema = StudySpec.model_json_schema()
    base = StudySpec().spec_hash()
    for (section, name), value in OPTIONS.items():
        ref = schema["properties"][section]["$ref"].rsplit("/", 1)[1]
        prop = schema["$defs"][ref]["properties"][name]
        assert prop.get("description"), (section, name)
        changed = StudySpec.model_validate({section: {name: value}})
        assert changed.spec_hash() != base, (section, name)


@pytest.mark.parametrize("section, name, bad", [
    ("data", "split", "per_batch"), ("inverse", "kfac_damping", "pi"),
    ("inverse", "rule", "drop_relative"), ("groundtruth", "lds_summary", "mean"),
    ("curvature", "mc_replicates", 0), ("curvature", "mc_replicates", 101),
    ("curvature", "fisher_types", {"K-FAC": "hutchinson"}),
])
def test_bad_values_are_refused(section, name, bad):
    with pytest.raises(ValidationError):
        StudySpec.model_validate({section: {name: bad}})


def test_fisher_types_for_a_method_without_a_fisher_names_key_and_allowed_keys():
    with pytest.raises(ValidationError) as error:
        StudySpec.model_validate({"curvature": {"fisher_types": {"GGN": "mc"}}})
    message = str(error.value)
    assert "curvature.fisher_types" in message and "'GGN'" in message
    assert "allowed keys: K-FAC, EK-FAC" in message
    spec = StudySpec.model_validate({"curvature": {"fisher_type": "mc",
                                                   "fisher_types": {"EK-FAC": "type2"}}})
    assert spec.curvature.fisher_type_of("K-FAC") == "mc"
    assert spec.curvature.fisher_type_of("EK-FAC") == "type2"


def test_paper_code_preset_and_its_pitfalls():
    spec = resolve_spec(preset="paper-code")
    paper = resolve_spec(preset="paper")
    assert spec.data.split == "per_loader"
    assert spec.curvature.block_structure == "tensor"
    assert spec.curvature.fisher_types == {"K-FAC": "mc", "EK-FAC": "mc"}
    assert spec.curvature.mc_samples == 1
    assert (spec.inverse.kfac_damping, spec.inverse.rule) == ("heuristic", "drop_absolute")
    assert spec.inverse.threshold == 1e-6 and spec.inverse.damping == 1e-4
    assert spec.groundtruth.lds_summary == "interval_midpoint"
    assert spec.groundtruth.n_bootstrap == 100
    assert spec.training.schedule == "cosine"
    # everything else as the paper preset
    assert spec.model == paper.model and spec.groundtruth.alphas == paper.groundtruth.alphas
    assert spec.training.checkpoints == paper.training.checkpoints
    pitfalls = known_pitfalls(spec)
    assert len(pitfalls) == 4 and "160 of 180" in pitfalls[0]
    assert known_pitfalls(paper) == [] and known_pitfalls(StudySpec()) == []
    # each pitfall comes from one option
    assert len(known_pitfalls(StudySpec.model_validate(
        {"inverse": {"kfac_damping": "heuristic"}}))) == 1
    # heuristic damping without K-FAC in methods is accepted (and is no pitfall)
    no_kfac = StudySpec.model_validate({"curvature": {"methods": ["GGN", "EK-FAC"]},
                                        "inverse": {"kfac_damping": "heuristic"}})
    assert known_pitfalls(no_kfac) == []
    assert "paper-code" in PRESETS
