"""Explicit (non-dynamic) error inversions: pseudobackprop and the DI steady state.

Shapes follow Podlaski & Machens 2020: ``W`` is ``(d_l, d_{l-1})``, ``B`` is ``(d_{l-1}, d_l)`` and errors are
batched row vectors ``(..., d_l)``; the results are ``(..., d_{l-1})``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dilightning.inversion._validation import check_alpha, check_delta, check_layer_pair, check_matrix, flatten_batch


def pseudo_inverse(W: Tensor, delta: Tensor) -> Tensor:
    """Propagate errors through the Moore-Penrose pseudoinverse, ``W⁺ δ`` (pseudobackprop).

    Implements ``M_l = W_l⁺`` of Podlaski & Machens 2020, Eq. 4, computed by SVD
    (``torch.linalg.pinv``), so rank-deficient ``W`` is handled; when the SVD fails to converge it
    falls back to a float64 least-squares solve by complete orthogonal factorization.

    Args:
        W: forward weights, ``(d_l, d_{l-1})``.
        delta: errors of layer ``l``, ``(..., d_l)``.

    Returns:
        ``W⁺ δ`` for every error, ``(..., d_{l-1})``, before any multiplication by ``g'(a_{l-1})``.
    """
    check_matrix("W", W)
    check_delta(delta, W.shape[0])
    try:
        return delta @ torch.linalg.pinv(W).transpose(0, 1)
    except RuntimeError:  # torch.linalg.LinAlgError subclasses RuntimeError
        # LAPACK's divide-and-conquer SVD can fail to converge on matrices with many equal singular
        # values (an orthogonal W, for example). A complete orthogonal factorization (gelsy) gives
        # the same minimum-norm least-squares solution without an SVD.
        flat, leading = flatten_batch(delta)
        solution = torch.linalg.lstsq(W.detach().cpu().double(), flat.detach().cpu().double().T, driver="gelsy").solution
        return solution.T.to(dtype=delta.dtype, device=delta.device).reshape(*leading, W.shape[1])


def non_dynamic_inversion(W: Tensor, B: Tensor, delta: Tensor, alpha: float) -> Tensor:
    """Compute the steady state of the leaky integral controller by a linear solve (NDI).

    Implements Podlaski & Machens 2020, Eq. 10, in the form of Algorithm 5 that keeps the solved
    system at the smaller layer size:

    - ``d_l > d_{l-1}`` (expanding): ``δ_{l-1} = (B W − α I)^{-1} B δ_l``;
    - otherwise (equal or contracting): ``δ_{l-1} = B (W B − α I)^{-1} δ_l``.

    At ``α = 0`` this is Eq. 12: ``W^{-1} δ`` for square ``W``, ``B (W B)^{-1} δ`` for a contracting
    layer, and a left inverse of ``W`` (``W⁺`` when ``B = −Wᵀ``) for an expanding one.

    Args:
        W: forward weights, ``(d_l, d_{l-1})``.
        B: feedback weights, ``(d_{l-1}, d_l)``.
        delta: errors of layer ``l``, ``(..., d_l)``.
        alpha: controller leak ``α ≥ 0``.

    Returns:
        ``δ_{l-1}`` of shape ``(..., d_{l-1})``, before any multiplication by ``g'(a_{l-1})``.
    """
    check_layer_pair(W, B)
    check_delta(delta, W.shape[0])
    alpha = check_alpha(alpha)
    flat, leading = flatten_batch(delta)
    d_l, d_prev = W.shape

    if d_l > d_prev:
        system = B @ W - alpha * torch.eye(d_prev, dtype=W.dtype, device=W.device)
        solution = torch.linalg.solve(system, B @ flat.transpose(0, 1))
        result = solution.transpose(0, 1)
    else:
        system = W @ B - alpha * torch.eye(d_l, dtype=W.dtype, device=W.device)
        solution = torch.linalg.solve(system, flat.transpose(0, 1))
        result = (B @ solution).transpose(0, 1)
    return result.reshape(*leading, d_prev)
