"""The training-time axis: attributing at a checkpoint of one training run."""

import numpy as np
import pytest
from pydantic import ValidationError

from curvscope.spec import resolve_spec
from curvscope.study import run_study

TINY = {"preset": "quick", "name": "tiny",
        "model": {"hidden": [8]},
        "training": {"epochs": 6, "checkpoints": [3, 6]},
        "curvature": {"methods": ["GGN", "K-FAC", "identity"]},
        "groundtruth": {"n_subsets": 12, "n_seeds": 2, "n_bootstrap": 50},
        "data": {"name": "iris", "test_fraction": 0.2}}


@pytest.mark.parametrize("epoch, text", [
    (9, "beyond the trained epochs (6); allowed: the checkpoint epochs 3, 6"),
    (4, "not a checkpoint epoch; allowed: the checkpoint epochs 3, 6"),
])
def test_an_epoch_that_is_no_checkpoint_is_refused_with_the_allowed_ones(epoch, text):
    config = {**TINY, "training": {**TINY["training"], "evaluate_at_epoch": epoch}}
    with pytest.raises(ValidationError) as info:
        resolve_spec(config)
    assert text in str(info.value)


@pytest.mark.slow
def test_checkpoints_share_one_training_run_and_one_retraining(tmp_path):
    cache = tmp_path / "cache"
    last = run_study(resolve_spec(TINY), cache_dir=cache)
    early_spec = resolve_spec({**TINY, "training": {**TINY["training"],
                                                    "evaluate_at_epoch": 3}})
    early = run_study(early_spec, cache_dir=cache)
    events = early.results["cache"]
    assert events["train"] == "reused"
    assert all(v == "reused" for k, v in events.items() if k.startswith("groundtruth/"))
    assert all(v == "computed" for k, v in events.items() if k.startswith("curvature/"))
    assert early.results["training"]["evaluated_epoch"] == 3
    # θ is the epoch-3 checkpoint of the run, and the targets are the retrained models' losses
    # at epoch 3 of the same recipe
    np.testing.assert_array_equal(early.arrays["retrained_losses/0.5"],
                                  last.arrays["retrained_losses_by_epoch/0.5"][0])
    np.testing.assert_array_equal(early.arrays["checkpoints/3"], last.arrays["checkpoints/3"])
    assert early.results["training"]["train_loss"] > last.results["training"]["train_loss"]
    # at the last epoch it is the plain study, number for number
    at_end = run_study(resolve_spec({**TINY, "training": {**TINY["training"],
                                                          "evaluate_at_epoch": 6}}),
                       cache_dir=cache)
    for method in ("GGN", "K-FAC", "identity"):
        np.testing.assert_array_equal(at_end.arrays[f"scores/{method}"],
                                      last.arrays[f"scores/{method}"])
        assert at_end.results["methods"][method]["lds"] == last.results["methods"][method]["lds"]
