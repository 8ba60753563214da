"""The spec, the method registry, the closed-form sizes and the results contract import no
torch (issue 10: the API validates, estimates and lists studies without torch)."""

import json
import subprocess
import sys

import pytest

CHECK = r"""
import json, sys
from curvscope.spec import PRESETS, StudySpec, resolve_spec
from curvscope.registry import METHODS, capability_table, get_method
from curvscope.sizes import closed_form_estimate, spec_n_params
from curvscope.results import load_results
out = {}
for name in PRESETS:
    spec = resolve_spec(preset=name)
    StudySpec.model_validate(spec.model_dump(mode="json"))
    out[name] = {"n_params": spec_n_params(spec), "hash": spec.spec_hash(),
                 "estimate": closed_form_estimate(spec)}
try:
    resolve_spec({"curvature": {"methods": ["nope"]}})
except Exception as exc:
    out["error"] = type(exc).__name__
out["table"] = capability_table()
StudySpec.model_json_schema()
load_results(sys.argv[1])
heavy = sorted(m for m in ("torch", "curvscope.curvature", "curvscope.study") if m in sys.modules)
print(json.dumps({"heavy": heavy, **out}))
"""


@pytest.fixture(scope="module")
def torch_free_run():
    from pathlib import Path

    golden = Path(__file__).parent / "fixtures" / "golden"
    proc = subprocess.run([sys.executable, "-c", CHECK, str(golden)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_spec_registry_sizes_and_results_import_no_torch(torch_free_run):
    assert torch_free_run["heavy"] == []
    assert torch_free_run["error"] == "ValidationError"
    assert {row["name"] for row in torch_free_run["table"]} >= {"H", "K-FAC", "EK-FAC"}
    assert {row["name"] for row in torch_free_run["table"] if row["has_fisher"]} == {
        "K-FAC", "EK-FAC"}


def test_closed_form_counts_match_the_built_models(torch_free_run):
    from curvscope.data import load_data
    from curvscope.models import build_mlp
    from curvscope.spec import PRESETS, resolve_spec

    for name in PRESETS:
        spec = resolve_spec(preset=name)
        data = load_data(spec.data)
        model = build_mlp(data.n_features, data.n_classes, spec.model, seed=0)
        assert torch_free_run[name]["n_params"] == sum(p.numel() for p in model.parameters())
        assert torch_free_run[name]["hash"] == spec.spec_hash()  # same classes, same hash
        assert torch_free_run[name]["estimate"]["n_test"] == data.n_test
    assert torch_free_run["paper"]["n_params"] == 6570


def test_spec_classes_keep_their_old_import_paths():
    from curvscope.attribution.inverse import InverseRule as A
    from curvscope.groundtruth import GroundTruthSpec as B
    from curvscope.groundtruth.retrain import GroundTruthSpec as B2
    from curvscope.models import ModelSpec as C
    from curvscope.models.mlp import ModelSpec as C2
    from curvscope.spec import DataSpec, GroundTruthSpec, InverseRule, ModelSpec, TrainingSpec
    from curvscope.training import TrainingSpec as D
    from curvscope.training.trainer import TrainingSpec as D2

    assert A is InverseRule and B is B2 is GroundTruthSpec and C is C2 is ModelSpec
    assert D is D2 is TrainingSpec and DataSpec.__name__ == "DataSpec"
