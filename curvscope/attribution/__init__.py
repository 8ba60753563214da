"""Per-sample gradients, the damped eigen-inverse, influence scores."""

from curvscope.attribution.gradients import per_sample_gradients
from curvscope.attribution.influence import influence_scores
from curvscope.attribution.inverse import InverseRule, damped_spectrum, inverse_weights

__all__ = ["InverseRule", "damped_spectrum", "influence_scores", "inverse_weights",
           "per_sample_gradients"]
