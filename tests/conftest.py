"""Shared fixtures: small random MLPs and data in float64."""

import pytest
import torch

from curvscope.models import ModelSpec, build_mlp

torch.set_default_dtype(torch.float64)


def make_problem(n=40, n_features=5, n_classes=4, hidden=(6, 5), activation="tanh", bias=True,
                 seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, n_features, generator=gen, dtype=torch.float64)
    y = torch.randint(0, n_classes, (n,), generator=gen)
    model = build_mlp(n_features, n_classes,
                      ModelSpec(hidden=list(hidden), activation=activation, bias=bias), seed=seed)
    return model, X, y


@pytest.fixture(params=[("tanh", True), ("gelu", True), ("relu", False)],
                ids=["tanh-bias", "gelu-bias", "relu-nobias"])
def problem(request):
    activation, bias = request.param
    return make_problem(activation=activation, bias=bias)


# --- test tiers --------------------------------------------------------------------------------
# Directories whose tests need real services or a browser carry their tier without each file
# saying so; every test left unmarked after that is in the fast tier (`pytest -m fast`).
_TIER_OF_DIRECTORY = {"integration": "integration", "browser": "browser"}
_SLOW_TIERS = ("slow", "integration", "browser", "docker")


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = item.path.parts
        for directory, tier in _TIER_OF_DIRECTORY.items():
            if directory in parts and "tests" in parts:
                item.add_marker(getattr(pytest.mark, tier))
        if not any(item.get_closest_marker(tier) for tier in _SLOW_TIERS):
            item.add_marker(pytest.mark.fast)
