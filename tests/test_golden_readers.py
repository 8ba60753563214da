"""The service and the dashboard read the golden results (a real run, recorded by
tests/fixtures/record_golden.py) through the results contract, without torch."""

import json
import subprocess
import sys
from pathlib import Path

GOLDEN = Path(__file__).parent / "fixtures" / "golden"

CODE = r"""
import json, sys
from pathlib import Path
from curvscope.results import load_results
from backend.artifacts import summarize
from frontend.logic import study_meta
raw = json.loads(Path(sys.argv[1], "results.json").read_text())
contract = load_results(raw)
summary = summarize(raw)
meta = study_meta({"id": 1, "state": "succeeded"}, raw)
no_images = study_meta({"id": 2, "state": "succeeded"}, {**raw, "images": None})
print(json.dumps({"torch": "torch" in sys.modules, "summary": summary, "meta": meta,
                  "no_images": no_images["has_images"],
                  "methods": sorted(contract.methods)}))
"""


def test_backend_and_dashboard_read_the_golden_results_without_torch():
    done = subprocess.run([sys.executable, "-c", CODE, str(GOLDEN)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    raw = json.loads((GOLDEN / "results.json").read_text())
    assert out["torch"] is False
    assert out["methods"] == sorted(raw["methods"])
    for method, entry in raw["methods"].items():
        assert out["summary"]["methods"][method]["lds"] == {
            a: v["headline"] for a, v in entry["lds"].items()}
    assert out["meta"]["has_images"] is True and out["no_images"] is False
    assert out["meta"]["alphas"] == [str(a) for a in raw["groundtruth"]["alphas"]]
    assert out["meta"]["n_test"] == raw["n_test"]
