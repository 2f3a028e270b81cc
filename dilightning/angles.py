"""Angles between error vectors and between matrices, in degrees.

These are the alignment measures of Podlaski & Machens 2020, Fig. 3c-k: ``δ_DI ∠ δ_NDI`` between
error vectors and ``B ∠ −Wᵀ`` between feedback and transposed forward weights.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def vector_angle(a: Tensor, b: Tensor) -> Tensor:
    """Return the angle in degrees between ``a`` and ``b`` along the last dimension.

    Args:
        a: vectors ``(..., d)``.
        b: vectors ``(..., d)``, broadcastable with ``a``.

    Returns:
        Angles in ``[0, 180]``, shape ``(...)``; NaN where either vector is zero.
    """
    cosine = (a * b).sum(-1) / (torch.linalg.vector_norm(a, dim=-1) * torch.linalg.vector_norm(b, dim=-1))
    return torch.rad2deg(torch.arccos(cosine.clamp(-1.0, 1.0)))


def matrix_angle(a: Tensor, b: Tensor) -> float:
    """Return the angle in degrees between two matrices under the Frobenius inner product.

    ``arccos(⟨A, B⟩_F / (‖A‖_F ‖B‖_F))``; for ``B`` and ``−Wᵀ`` this is the ``B ∠ −Wᵀ`` of the paper.
    Returns NaN when either matrix is zero.
    """
    if a.shape != b.shape:
        raise ValueError(f"matrix_angle needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    numerator = float((a * b).sum())
    denominator = float(torch.linalg.matrix_norm(a) * torch.linalg.matrix_norm(b))
    if denominator == 0.0:
        return math.nan
    return math.degrees(math.acos(max(-1.0, min(1.0, numerator / denominator))))
