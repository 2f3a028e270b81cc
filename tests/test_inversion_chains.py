"""Single-loop and repeat-layer DI against their steady states (Podlaski & Machens 2020, Section 7.3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dilightning.inversion import non_dynamic_inversion, repeat_layer_inversion, single_loop_inversion
from tests.conftest import conditioned_matrix

STEPS = 6000  # long enough for these well-conditioned systems to settle to float64 precision


@pytest.mark.parametrize("alpha", [0.0, 1e-2])
def test_sldi_linear_contracting_steady_state(generator, alpha):
    # d_1 = 12 > d_2 = 8 > d_3 = 5. At the fixed point δ_1 = B u, δ_2 = W_2 δ_1 and
    # W_3 W_2 B u = δ_3 + α u, so δ_1 = B (W_3 W_2 B − α I)^{-1} δ_3 (Eqs. S8-S9, written dimensionally).
    W2 = conditioned_matrix(8, 12, generator, low=0.5, high=1.0)
    W3 = conditioned_matrix(5, 8, generator, low=0.5, high=1.0)
    B = -(W3 @ W2).T
    delta = torch.randn(4, 5, generator=generator, dtype=torch.float64)

    first, second = single_loop_inversion([W2, W3], B, delta, alpha, nonlinearities="linear", steps=STEPS)

    loop = (W3 @ W2 @ B).numpy() - alpha * np.eye(5)
    expected_first = (B.numpy() @ np.linalg.solve(loop, delta.numpy().T)).T
    np.testing.assert_allclose(first.numpy(), expected_first, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(second.numpy(), expected_first @ W2.numpy().T, rtol=1e-7, atol=1e-9)


def test_sldi_linear_expanding_equals_sequential(generator):
    # d_1 = 5 ≤ d_2 = 8 ≤ d_3 = 12 at α = 0: δ_2 = W_3⁺ δ_3 and δ_1 = W_2⁺ δ_2 (Eqs. S6-S7 with g linear).
    W2 = conditioned_matrix(8, 5, generator, low=0.5, high=1.0)
    W3 = conditioned_matrix(12, 8, generator, low=0.5, high=1.0)
    source = torch.randn(4, 5, generator=generator, dtype=torch.float64)
    delta = source @ (W3 @ W2).T  # reachable output error

    first, second = single_loop_inversion([W2, W3], -(W3 @ W2).T, delta, 0.0, nonlinearities="linear", steps=STEPS)

    expected_second = (np.linalg.pinv(W3.numpy()) @ delta.numpy().T).T
    expected_first = (np.linalg.pinv(W2.numpy()) @ expected_second.T).T
    np.testing.assert_allclose(second.numpy(), expected_second, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(first.numpy(), expected_first, rtol=1e-7, atol=1e-9)


def test_sldi_tanh_equal_dims_matches_s6_s7(generator):
    # Equal sizes at α = 0 with the nonlinear controller: δ_2 = g⁻¹(W_3^{-1} δ_3), δ_1 = g⁻¹(W_2^{-1} δ_2).
    W2 = conditioned_matrix(6, 6, generator, low=0.5, high=1.0)
    W3 = conditioned_matrix(6, 6, generator, low=0.5, high=1.0)
    source = 0.3 * torch.randn(3, 6, generator=generator, dtype=torch.float64)
    delta = torch.tanh(torch.tanh(source) @ W2.T) @ W3.T

    first, second = single_loop_inversion([W2, W3], -(W3 @ W2).T, delta, 0.0, nonlinearities="tanh", steps=STEPS)

    expected_second = np.arctanh(np.linalg.solve(W3.numpy(), delta.numpy().T).T)
    expected_first = np.arctanh(np.linalg.solve(W2.numpy(), expected_second.T).T)
    np.testing.assert_allclose(second.numpy(), expected_second, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(first.numpy(), expected_first, rtol=1e-6, atol=1e-8)


def test_sldi_linearized_matches_s15_s16(generator):
    # Eqs. S12-S14 at α = 0: δ_2 = W_3⁺ δ_3 ◦ g'(a_2), δ_1 = W_2⁺ δ_2 ◦ g'(a_1). Build δ_3 from a chosen δ_1.
    W2 = conditioned_matrix(8, 5, generator, low=0.5, high=1.0)
    W3 = conditioned_matrix(12, 8, generator, low=0.5, high=1.0)
    slope1 = 0.5 + 0.5 * torch.rand(3, 5, generator=generator, dtype=torch.float64)
    slope2 = 0.5 + 0.5 * torch.rand(3, 8, generator=generator, dtype=torch.float64)
    first_expected = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    second_expected = (first_expected / slope1) @ W2.T
    delta = (second_expected / slope2) @ W3.T

    first, second = single_loop_inversion(
        [W2, W3], -(W3 @ W2).T, delta, 0.0, nonlinearities="tanh", derivatives=[slope1, slope2], steps=STEPS
    )

    np.testing.assert_allclose(second.numpy(), second_expected.numpy(), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(first.numpy(), first_expected.numpy(), rtol=1e-6, atol=1e-8)


def test_sldi_single_hidden_layer_equals_di(generator):
    from dilightning.inversion import dynamic_inversion

    W = conditioned_matrix(5, 9, generator)
    delta = torch.randn(3, 5, generator=generator, dtype=torch.float64)

    (loop,) = single_loop_inversion([W], -W.T, delta, 0.01, nonlinearities="tanh", steps=300)
    sequential = dynamic_inversion(W, -W.T, delta, 0.01, steps=300, nonlinearity="tanh")

    torch.testing.assert_close(loop, sequential, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 1e-2])
def test_repeat_layer_linearized_equals_sequential(generator, alpha):
    W2 = conditioned_matrix(8, 12, generator, low=0.5, high=1.0)
    W3 = conditioned_matrix(5, 8, generator, low=0.5, high=1.0)
    slope1 = 0.5 + 0.5 * torch.rand(4, 12, generator=generator, dtype=torch.float64)
    slope2 = 0.5 + 0.5 * torch.rand(4, 8, generator=generator, dtype=torch.float64)
    delta = torch.randn(4, 5, generator=generator, dtype=torch.float64)

    first, second = repeat_layer_inversion(
        [W2, W3], [-W2.T, -W3.T], delta, alpha, derivatives=[slope1, slope2], steps=STEPS
    )

    expected_second = non_dynamic_inversion(W3, -W3.T, delta, alpha) * slope2
    expected_first = non_dynamic_inversion(W2, -W2.T, expected_second, alpha) * slope1
    torch.testing.assert_close(second, expected_second, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(first, expected_first, rtol=1e-7, atol=1e-9)


def test_repeat_layer_three_hidden_layers(generator):
    weights = [
        conditioned_matrix(10, 14, generator, low=0.5, high=1.0),
        conditioned_matrix(7, 10, generator, low=0.5, high=1.0),
        conditioned_matrix(4, 7, generator, low=0.5, high=1.0),
    ]
    delta = torch.randn(2, 4, generator=generator, dtype=torch.float64)

    errors = repeat_layer_inversion(weights, [-W.T for W in weights], delta, [0.01, 0.02, 0.03], steps=STEPS)

    expected = delta
    for W, alpha, error in zip(reversed(weights), [0.03, 0.02, 0.01], reversed(errors)):
        expected = non_dynamic_inversion(W, -W.T, expected, alpha)
        torch.testing.assert_close(error, expected, rtol=1e-7, atol=1e-9)


def test_repeat_layer_nonlinear_reaches_sequential_fixed_point(generator):
    W2 = conditioned_matrix(6, 6, generator, low=0.5, high=1.0)
    W3 = conditioned_matrix(6, 6, generator, low=0.5, high=1.0)
    source = 0.3 * torch.randn(3, 6, generator=generator, dtype=torch.float64)
    delta = torch.tanh(torch.tanh(source) @ W2.T) @ W3.T

    first, second = repeat_layer_inversion([W2, W3], [-W2.T, -W3.T], delta, 0.0, nonlinearities="tanh", steps=STEPS)

    np.testing.assert_allclose((torch.tanh(second) @ W3.T).numpy(), delta.numpy(), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose((torch.tanh(first) @ W2.T).numpy(), second.numpy(), rtol=1e-6, atol=1e-8)
