"""Angles between error vectors and between matrices, in degrees.

These are the alignment measures of Podlaski & Machens 2020, Fig. 3c-k: ``δ_DI ∠ δ_NDI`` between
error vectors and ``B ∠ −Wᵀ`` between feedback and transposed forward weights.
"""

from __future__ import annotations

import torch
from torch import Tensor


def vector_angle(a: Tensor, b: Tensor) -> Tensor:
    """Return the angle in degrees between ``a`` and ``b`` along the last dimension.

    Computed in float64 as ``2 atan2(‖â − b̂‖, ‖â + b̂‖)`` for the unit vectors ``â``, ``b̂``, which
    stays accurate for nearly parallel vectors, where ``arccos`` of the cosine loses about half the
    digits.

    Args:
        a: vectors ``(..., d)``.
        b: vectors ``(..., d)``, broadcastable with ``a``.

    Returns:
        Angles in ``[0, 180]``, shape ``(...)``, float64; NaN where either vector is zero.
    """
    a64, b64 = a.detach().to(torch.float64), b.detach().to(torch.float64)
    unit_a = a64 / torch.linalg.vector_norm(a64, dim=-1, keepdim=True)
    unit_b = b64 / torch.linalg.vector_norm(b64, dim=-1, keepdim=True)
    difference = torch.linalg.vector_norm(unit_a - unit_b, dim=-1)
    total = torch.linalg.vector_norm(unit_a + unit_b, dim=-1)
    return torch.rad2deg(2.0 * torch.atan2(difference, total))


def matrix_angle(a: Tensor, b: Tensor) -> float:
    """Return the angle in degrees between two matrices under the Frobenius inner product.

    The angle is ``arccos(⟨A, B⟩_F / (‖A‖_F ‖B‖_F))``, evaluated as :func:`vector_angle` of the
    flattened matrices. For ``B`` and ``−Wᵀ`` it is the ``B ∠ −Wᵀ`` of Podlaski & Machens 2020, Fig. 3e.
    Returns NaN when either matrix is zero.
    """
    if a.shape != b.shape:
        raise ValueError(f"matrix_angle needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    return float(vector_angle(a.reshape(-1), b.reshape(-1)))
