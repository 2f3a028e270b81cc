"""System matrix of Eq. S24, its spectral abscissa and SSA stabilization of random feedback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from dilightning.inversion import (
    FeedbackStabilizationError,
    max_real_eigenvalue,
    optimize_feedback_ssa,
    smoothed_spectral_abscissa,
    system_matrix,
)
from tests.conftest import conditioned_matrix, uniform_matrix


def _numpy_s24(W: np.ndarray, B: np.ndarray, alpha: float) -> np.ndarray:
    d_l, d_prev = W.shape
    return np.block([[-np.eye(d_prev), B], [W, -alpha * np.eye(d_l)]])


@pytest.mark.parametrize(("shape", "alpha"), [((10, 20), 0.0), ((20, 10), 1e-2), ((15, 15), 1e-3)])
def test_max_real_eigenvalue_matches_numpy(generator, shape, alpha):
    W = uniform_matrix(*shape, generator, 0.5)
    B = uniform_matrix(shape[1], shape[0], generator, 0.5)

    result = max_real_eigenvalue(W, B, alpha)

    expected = np.linalg.eigvals(_numpy_s24(W.numpy(), B.numpy(), alpha)).real.max()
    assert result == pytest.approx(expected, abs=1e-10)


def test_system_matrix_matches_numpy_block(generator):
    W = uniform_matrix(4, 6, generator, 1.0)
    B = uniform_matrix(6, 4, generator, 1.0)

    np.testing.assert_array_equal(system_matrix(W, B, 0.3).numpy(), _numpy_s24(W.numpy(), B.numpy(), 0.3))


def test_system_matrix_single_loop_blocks(generator):
    W2 = uniform_matrix(5, 7, generator, 1.0)
    W3 = uniform_matrix(3, 5, generator, 1.0)
    B = uniform_matrix(7, 3, generator, 1.0)

    matrix = system_matrix([W2, W3], B, 0.2).numpy()

    expected = np.block(
        [
            [-np.eye(7), np.zeros((7, 5)), B.numpy()],
            [W2.numpy(), -np.eye(5), np.zeros((5, 3))],
            [np.zeros((3, 7)), W3.numpy(), -0.2 * np.eye(3)],
        ]
    )
    np.testing.assert_array_equal(matrix, expected)


def test_tr_init_contracting_is_stable(generator):
    W = uniform_matrix(10, 20, generator, 0.01)  # the paper's initialization scale

    assert max_real_eigenvalue(W, -W.T, 0.0) < 0


def test_ssa_stabilizes_random_feedback(generator):
    W = uniform_matrix(10, 20, generator, 0.01)
    B = uniform_matrix(20, 10, generator, 0.01)
    assert max_real_eigenvalue(W, B, 0.0) > 0  # R-Init before optimization is unstable for this draw

    stabilized = optimize_feedback_ssa(W, B, 0.0, target=-0.01)

    assert max_real_eigenvalue(W, stabilized, 0.0) < -0.01
    assert stabilized.shape == B.shape


def test_ssa_is_deterministic(generator):
    W = uniform_matrix(6, 9, generator, 0.1)
    B = uniform_matrix(9, 6, generator, 0.1)

    first = optimize_feedback_ssa(W, B, 1e-2)
    second = optimize_feedback_ssa(W, B, 1e-2)

    assert torch.equal(first, second)


def test_ssa_single_loop(generator):
    W2 = uniform_matrix(10, 20, generator, 0.01)
    W3 = uniform_matrix(10, 10, generator, 0.01)
    B = uniform_matrix(20, 10, generator, 0.01)

    stabilized = optimize_feedback_ssa([W2, W3], B, 0.0)

    assert max_real_eigenvalue([W2, W3], stabilized, 0.0) < -0.01


def test_ssa_budget_exhausted_raises(generator):
    W = uniform_matrix(10, 20, generator, 0.01)
    B = uniform_matrix(20, 10, generator, 0.01)

    with pytest.raises(FeedbackStabilizationError, match="max_steps"):
        optimize_feedback_ssa(W, B, 0.0, max_steps=2)


def test_ssa_expanding_zero_leak_raises(generator):
    W = uniform_matrix(20, 10, generator, 0.1)

    with pytest.raises(FeedbackStabilizationError, match="expanding"):
        optimize_feedback_ssa(W, -W.T, 0.0)


def test_smoothed_abscissa_bounds_and_gradient(generator):
    matrix = system_matrix(*_pair(generator), 0.05).numpy()
    abscissa = np.linalg.eigvals(matrix).real.max()

    value, gradient = smoothed_spectral_abscissa(matrix, 0.01)

    assert value > abscissa
    assert np.trace(gradient) == pytest.approx(1.0)  # shifting A by c I shifts the SSA by c
    direction = np.zeros_like(matrix)
    direction[0, -1] = 1.0
    step = 1e-6
    shifted, _ = smoothed_spectral_abscissa(matrix + step * direction, 0.01)
    assert (shifted - value) / step == pytest.approx(gradient[0, -1], rel=1e-3, abs=1e-7)


def _pair(generator):
    W = conditioned_matrix(4, 6, generator)
    return W, -W.T


def test_modal_lyapunov_matches_bartels_stewart(generator):
    from dilightning.inversion.stability import _DenseLyapunov, _ModalLyapunov

    W = uniform_matrix(6, 9, generator, 0.5)
    B = uniform_matrix(9, 6, generator, 0.5)
    matrix = system_matrix(W, B, 0.1).numpy()
    shift = np.linalg.eigvals(matrix).real.max() + 0.3
    modal, dense = _ModalLyapunov(matrix), _DenseLyapunov(matrix)

    assert modal.trace(shift) == pytest.approx(dense.trace(shift), rel=1e-9)
    np.testing.assert_allclose(modal.gradient(shift), dense.gradient(shift), rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("controller", ["standard", "expanding"])
@pytest.mark.parametrize(("shape", "alpha"), [((4, 9), 0.0), ((9, 4), 0.3), ((6, 6), 0.05), ((1, 7), 0.2)])
def test_system_eigenvalues_match_full_matrix(generator, controller, shape, alpha):
    from dilightning.inversion.stability import system_eigenvalues

    W = uniform_matrix(*shape, generator, 1.0)
    B = uniform_matrix(shape[1], shape[0], generator, 1.0)

    reduced = system_eigenvalues(W, B, alpha, controller=controller).numpy()

    d_l, d_prev = shape
    if controller == "standard":
        full = np.block([[-np.eye(d_prev), B.numpy()], [W.numpy(), -alpha * np.eye(d_l)]])
    else:
        full = np.block([[-alpha * np.eye(d_prev), B.numpy()], [W.numpy(), -np.eye(d_l)]])
    expected = np.linalg.eigvals(full)
    distances = np.abs(reduced[:, None] - expected[None, :])
    rows, columns = linear_sum_assignment(distances)  # pair each eigenvalue with its nearest match
    assert len(reduced) == len(expected)
    assert distances[rows, columns].max() < 1e-8
