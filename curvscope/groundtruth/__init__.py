"""Ground truth: subset masks, leave-some-out retraining, LDS with bootstrap."""

from curvscope.groundtruth.lds import (
    lds,
    lds_many,
    predicted_losses,
    seed_noise_ceiling,
    spearman_columns,
)
from curvscope.groundtruth.retrain import (
    GroundTruthSpec,
    RetrainedLosses,
    loss_spread,
    retrain_slice,
)
from curvscope.groundtruth.subsets import draw_subset, draw_subsets, subset_size

__all__ = [
    "GroundTruthSpec",
    "RetrainedLosses",
    "retrain_slice",
    "draw_subset",
    "draw_subsets",
    "lds",
    "lds_many",
    "loss_spread",
    "predicted_losses",
    "seed_noise_ceiling",
    "spearman_columns",
    "subset_size",
]
