"""The block-by-block diagnostics (issue 14) against the implementation they replaced
(tests/diagnostics/reference_report.py, reference_shares.py: dense d × d and d_b × d_b
recompositions), leaf by leaf, on small float64 MLPs: every layout (layer, tensor), every
method, the heuristic K-FAC damping, a Monte-Carlo Fisher for K-FAC only (EK-FAC and K-FAC in
different bases), studies without H or G.

Agreement: relative 1e-10, or absolute 1e-12 for quantities that are round-off by nature
(a squared error that is exactly zero in exact arithmetic, e.g. a bias block's K-FAC error, or
the Pythagoras gap). Eigenvalue counts and arrays must match too."""

import math

import pytest
import torch

from curvscope.attribution import InverseRule, influence_scores, per_sample_gradients
from curvscope.curvature import CurvatureContext, CurvatureSettings
from curvscope.diagnostics.metrics import spectral_distance_sq, swap_tests, swap_tests_from_eigen
from curvscope.diagnostics.report import diagnose
from curvscope.diagnostics.shares import kfac_tensor_spectrum, sorted_spectrum
from curvscope.models import ParameterLayout
from curvscope.registry import get_method
from tests.conftest import make_problem
from tests.diagnostics.reference_report import diagnose as reference_diagnose

ALL = ["H", "GGN", "GGN-blockdiag", "EK-FAC", "K-FAC", "identity", "GGN-diag"]
RELATIVE, ABSOLUTE = 1e-10, 1e-12


def build(methods, structure="layer", fisher_types=(), activation="gelu", seed=0):
    model, X, y = make_problem(n=40, hidden=(7, 5), activation=activation, seed=seed)
    ctx = CurvatureContext(model, X, y, CurvatureSettings(block_structure=structure,
                                                          fisher_types=fisher_types, seed=3))
    # dense methods first, as the study builds them
    order = sorted(methods, key=lambda n: get_method(n).dense_matrix is None)
    operators = {n: get_method(n).build(ctx) for n in order}
    operators = {n: operators[n] for n in methods}
    layout = ParameterLayout.from_model(model, structure)
    train_g = per_sample_gradients(model, X, y, layout)
    test_g = per_sample_gradients(model, X[:6], y[:6], layout)
    return ctx, operators, train_g, test_g


def assert_same(new, old, path=""):
    """Leaf by leaf: same keys in the same order, numbers within the tolerances above."""
    if isinstance(old, dict):
        assert isinstance(new, dict) and list(new) == list(old), path
        for key in old:
            assert_same(new[key], old[key], f"{path}/{key}")
    elif isinstance(old, list):
        assert isinstance(new, list) and len(new) == len(old), path
        for j, (a, b) in enumerate(zip(new, old, strict=True)):
            assert_same(a, b, f"{path}[{j}]")
    elif isinstance(old, float) and not isinstance(old, bool):
        assert isinstance(new, float), path
        if math.isnan(old) or math.isinf(old):
            assert new == old or (math.isnan(new) and math.isnan(old)), path
        else:
            assert abs(new - old) <= max(RELATIVE * abs(old), ABSOLUTE), (path, new, old)
    else:
        assert new == old, (path, new, old)


def compare(methods, structure="layer", rule=None, fisher_types=(), activation="gelu"):
    ctx, operators, train_g, test_g = build(methods, structure, fisher_types, activation)
    rule = rule or InverseRule(damping=1e-3)
    scores = {n: influence_scores(op, train_g, test_g, rule)[0] for n, op in operators.items()}
    new, new_arrays = diagnose(ctx, operators, 3, rule.damping, rule=rule, scores=scores)
    old, old_arrays = reference_diagnose(ctx, operators, 3, rule.damping, rule=rule,
                                         scores=scores)
    assert_same(new, old)
    assert list(new_arrays) == list(old_arrays)
    for name, array in old_arrays.items():
        torch.testing.assert_close(new_arrays[name], array, rtol=RELATIVE, atol=ABSOLUTE,
                                   msg=name)
    return new


@pytest.mark.parametrize("structure", ["layer", "tensor"])
def test_every_method_equals_the_dense_reference(structure):
    out = compare(ALL, structure)
    assert out["decomposition"]["chain_steps"] and out["methods"]["K-FAC"][
        "relative_residual_to_H"] > 0


@pytest.mark.parametrize("structure", ["layer", "tensor"])
def test_heuristic_kfac_damping_and_abs_rule(structure):
    compare(ALL, structure, InverseRule(damping=1e-2, kfac_damping="heuristic"))
    compare(ALL, structure, InverseRule(damping=1e-3, rule="abs"))


def test_different_bases_for_kfac_and_ekfac():
    # K-FAC on a Monte-Carlo Fisher, EK-FAC on the exact type-2: two Kronecker bases
    compare(ALL, "layer", fisher_types=(("K-FAC", "mc"),))


@pytest.mark.parametrize("methods", [
    ["GGN-blockdiag", "EK-FAC", "K-FAC", "identity"],  # no dense matrix: no residuals
    ["H", "EK-FAC", "K-FAC"],  # H alone, no GGN-blockdiag: GGN blocks by eigh
    ["GGN", "K-FAC", "GGN-diag"],  # no decomposition
])
def test_subsets_of_methods(methods):
    compare(methods, "layer", activation="tanh")


def test_spectral_distance_and_swap_tests_from_eigenpairs():
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(9, 9, generator=gen, dtype=torch.float64)
    G = A @ A.T
    g, U = torch.linalg.eigh(G)
    Q = torch.linalg.qr(torch.randn(9, 9, generator=gen, dtype=torch.float64)).Q
    k = torch.rand(9, generator=gen, dtype=torch.float64)
    dense = (U * g) @ U.T - (Q * k) @ Q.T
    assert spectral_distance_sq(g, k, (U.T @ Q).square()) == pytest.approx(
        float(torch.linalg.norm(dense) ** 2), rel=1e-12)
    old = swap_tests(G, k, Q)
    new = swap_tests_from_eigen(g, k, (U.T @ Q).square(), float(torch.linalg.norm(G)))
    for key, value in old.items():
        assert new[key] == pytest.approx(value, rel=1e-12)


def test_kfac_tensor_spectra_in_closed_form():
    ctx, operators, _, _ = build(["K-FAC"], "layer")
    for b in operators["K-FAC"].blocks:
        dense = b.to_dense()
        n_weight = b.block.out_features * b.block.in_features
        for lo, hi in ((0, n_weight), (n_weight, b.size), (0, b.size)):
            torch.testing.assert_close(kfac_tensor_spectrum(b, lo, hi),
                                       sorted_spectrum(dense[lo:hi, lo:hi]),
                                       rtol=0, atol=1e-13)
        assert kfac_tensor_spectrum(b, 1, 3) is None
