"""The pydantic spec classes of a study's sections, in torch-free modules (issue 10: the API
validates and lists studies without importing torch). ``curvscope.spec`` assembles them into
``StudySpec``; each class is also re-exported from the module that used to define it
(``curvscope.attribution.inverse.InverseRule``, ``curvscope.models.mlp.ModelSpec``,
``curvscope.training.trainer.TrainingSpec``, ``curvscope.groundtruth.retrain.GroundTruthSpec``;
``DataSpec`` stays in ``curvscope.data.spec``, already torch-free)."""

from curvscope.data.spec import DataSpec
from curvscope.specs.groundtruth import GroundTruthSpec
from curvscope.specs.inverse import InverseRule
from curvscope.specs.model import ModelSpec
from curvscope.specs.training import TrainingSpec

__all__ = ["DataSpec", "GroundTruthSpec", "InverseRule", "ModelSpec", "TrainingSpec"]
