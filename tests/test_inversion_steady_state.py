"""NDI and PBP against closed forms computed independently with numpy (Podlaski & Machens 2020, Eq. 12)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dilightning.inversion import non_dynamic_inversion, pseudo_inverse
from tests.conftest import conditioned_matrix


def test_ndi_square_is_inverse(generator):
    W = conditioned_matrix(12, 12, generator)
    delta = torch.randn(5, 12, generator=generator, dtype=torch.float64)
    B = -W.T  # any invertible B gives W^{-1} δ at α = 0

    result = non_dynamic_inversion(W, B, delta, 0.0)

    expected = np.linalg.solve(W.numpy(), delta.numpy().T).T
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_ndi_square_random_feedback_is_inverse(generator):
    W = conditioned_matrix(8, 8, generator)
    B = conditioned_matrix(8, 8, generator)
    delta = torch.randn(3, 8, generator=generator, dtype=torch.float64)

    result = non_dynamic_inversion(W, B, delta, 0.0)

    expected = np.linalg.solve(W.numpy(), delta.numpy().T).T
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-9, atol=1e-11)


def test_ndi_contracting_matches_eq12(generator):
    W = conditioned_matrix(6, 15, generator)
    B = conditioned_matrix(15, 6, generator)
    delta = torch.randn(4, 6, generator=generator, dtype=torch.float64)

    result = non_dynamic_inversion(W, B, delta, 0.0)

    Wn, Bn = W.numpy(), B.numpy()
    expected = (Bn @ np.linalg.inv(Wn @ Bn) @ delta.numpy().T).T
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-9, atol=1e-11)
    # The forward transformation of the result reproduces δ exactly (Eq. 9 at α = 0).
    np.testing.assert_allclose((Wn @ result.numpy().T).T, delta.numpy(), rtol=1e-9, atol=1e-11)


def test_ndi_expanding_tr_init_tends_to_pseudoinverse(generator):
    W = conditioned_matrix(15, 6, generator)
    delta = torch.randn(4, 15, generator=generator, dtype=torch.float64)

    result = non_dynamic_inversion(W, -W.T, delta, 1e-10)

    expected = (np.linalg.pinv(W.numpy()) @ delta.numpy().T).T
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-7, atol=1e-9)


def test_ndi_expanding_random_feedback_inverts_range(generator):
    W = conditioned_matrix(15, 6, generator)
    B = conditioned_matrix(6, 15, generator)
    source = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    delta = source @ W.T  # δ in the range of W, so every left inverse recovers the source

    result = non_dynamic_inversion(W, B, delta, 0.0)

    np.testing.assert_allclose(result.numpy(), source.numpy(), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("alpha", [1e-3, 1e-2, 0.5])
@pytest.mark.parametrize("shape", [(6, 15), (15, 6), (9, 9)])
def test_ndi_leak_matches_eq10(generator, shape, alpha):
    W = conditioned_matrix(*shape, generator)
    B = conditioned_matrix(shape[1], shape[0], generator)
    delta = torch.randn(3, shape[0], generator=generator, dtype=torch.float64)

    result = non_dynamic_inversion(W, B, delta, alpha)

    Wn, Bn = W.numpy(), B.numpy()
    expected = (Bn @ np.linalg.solve(Wn @ Bn - alpha * np.eye(shape[0]), delta.numpy().T)).T
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("shape", [(6, 15), (15, 6), (9, 9)])
def test_pseudo_inverse_matches_numpy(generator, shape):
    W = conditioned_matrix(*shape, generator)
    delta = torch.randn(7, shape[0], generator=generator, dtype=torch.float64)

    result = pseudo_inverse(W, delta)

    expected = (np.linalg.pinv(W.numpy()) @ delta.numpy().T).T
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-9, atol=1e-11)


def test_pseudo_inverse_rank_deficient(generator):
    W = conditioned_matrix(6, 9, generator)
    W[3] = W[0]  # duplicate a row: rank 5
    delta = torch.randn(2, 6, generator=generator, dtype=torch.float64)

    result = pseudo_inverse(W, delta)

    expected = (np.linalg.pinv(W.numpy()) @ delta.numpy().T).T
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-8, atol=1e-10)


def test_pseudo_inverse_falls_back_when_svd_fails(generator, monkeypatch):
    W = conditioned_matrix(9, 6, generator)
    delta = torch.randn(4, 9, generator=generator, dtype=torch.float64)

    def failing_pinv(matrix):
        raise torch.linalg.LinAlgError("linalg.svd: The algorithm failed to converge")

    monkeypatch.setattr(torch.linalg, "pinv", failing_pinv)
    result = pseudo_inverse(W, delta)

    expected = (np.linalg.pinv(W.numpy()) @ delta.numpy().T).T
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-9, atol=1e-11)
