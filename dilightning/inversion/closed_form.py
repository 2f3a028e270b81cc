"""Exact final state of the linear-controller Euler recurrence, without stepping through it.

With a linear controller, ``steps`` explicit Euler updates of Podlaski & Machens 2020, Eqs. 5 and 8
(or of the expanding-layer controller, Eqs. S1-S2) form a linear recurrence with a constant input
``δ_l``. Its final state is therefore a fixed linear map of ``δ_l``: ``δ_{l-1} = P δ_l`` with
``P`` of shape ``(d_{l-1}, d_l)``. This module computes ``P`` once per weight pair, so a whole batch
of errors costs one matrix product.

Reduction. ``δ_{l-1}`` starts at zero and only ever moves along ``B u``, so it stays in the range of
``B``; the controller likewise stays in ``span(δ_l) + range(W)``. The recurrence therefore lives in
a subspace of size about ``2·min(d_l, d_{l-1}) + 1`` and depends on ``W`` and ``B`` only through the
smaller of the two loop products ``K = W B`` (``d_l × d_l``) and ``N = B W``
(``d_{l-1} × d_{l-1}``). Diagonalizing that product decouples the recurrence into one tiny
(3×3 or 4×4 homogeneous) recurrence per eigenvalue, whose ``steps``-th power costs ``O(log steps)``
products. When the eigenvectors are ill-conditioned (a nearly defective loop product), the same
recurrence is instead raised to its power as one dense matrix in the reduced coordinates.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Above this Frobenius condition number of the eigenvector matrix, the modal route loses more than
# about 1e-6 relative accuracy in float64 and the dense route is used instead.
MAX_EIGENVECTOR_CONDITION = 1e7


def _blocks(rows: list[list[Tensor | float | None]], size: int, like: Tensor) -> Tensor:
    """Assemble a block matrix whose blocks are ``(..., size, size)`` tensors or scalar multiples of I."""
    eye = torch.eye(size, dtype=like.dtype, device=like.device).expand(like.shape[:-2] + (size, size))
    zero = torch.zeros_like(eye)
    assembled = []
    for row in rows:
        pieces = []
        for block in row:
            if block is None:
                pieces.append(zero)
            elif isinstance(block, Tensor):
                pieces.append(block)
            else:
                pieces.append(block * eye)
        assembled.append(torch.cat(pieces, dim=-1))
    return torch.cat(assembled, dim=-2)


def _one_step_operator(loop: Tensor, dt: float, alpha: float, recurrence: str) -> Tensor:
    """Return the homogeneous one-step matrix of a reduced Euler recurrence.

    ``loop`` is the loop product (``K`` or ``N``) as a ``(..., m, m)`` tensor; a batch of ``1 × 1``
    eigenvalues gives the per-mode operators. The last block of the state is the constant input,
    so ``H^steps`` maps ``[0, …, 0, input]`` to the final state. Each update uses the value just
    written by the previous one, in the order of Algorithms 1-2 (Podlaski & Machens 2020).
    """
    m = loop.shape[-1]
    decay = 1.0 - dt
    leak = 1.0 - dt * alpha
    dt_loop = dt * loop

    if recurrence == "standard_range_B":
        # State [p, u, δ_l] with δ_{l-1} = B p: p ← (1-dt) p + dt u, then u ← (1-dtα) u + dt K p − dt δ_l.
        first = _blocks([[decay, dt, None], [None, 1.0, None], [None, None, 1.0]], m, loop)
        second = _blocks([[1.0, None, None], [dt_loop, leak, -dt], [None, None, 1.0]], m, loop)
    elif recurrence == "standard_range_Wt":
        # State [x, q, c, Bδ_l] with u = W q + c δ_l: x ← (1-dt) x + dt N q + dt c,
        # then q ← (1-dtα) q + dt x and c ← (1-dtα) c − dt Bδ_l.
        first = _blocks(
            [[decay, dt_loop, dt, None], [None, 1.0, None, None], [None, None, 1.0, None], [None, None, None, 1.0]],
            m,
            loop,
        )
        second = _blocks(
            [[1.0, None, None, None], [dt, leak, None, None], [None, None, leak, -dt], [None, None, None, 1.0]],
            m,
            loop,
        )
    elif recurrence == "expanding_range_B":
        # State [r, y, δ_l] with δ_{l-1} = B r and δ̃_l = y: r ← (1-dtα) r + dt y − dt δ_l,
        # then y ← (1-dt) y + dt K r.
        first = _blocks([[leak, dt, -dt], [None, 1.0, None], [None, None, 1.0]], m, loop)
        second = _blocks([[1.0, None, None], [dt_loop, decay, None], [None, None, 1.0]], m, loop)
    elif recurrence == "expanding_range_Wt":
        # State [x, s, Bδ_l] with δ̃_l = W s: x ← (1-dtα) x + dt N s − dt Bδ_l, then s ← (1-dt) s + dt x.
        first = _blocks([[leak, dt_loop, -dt], [None, 1.0, None], [None, None, 1.0]], m, loop)
        second = _blocks([[1.0, None, None], [dt, decay, None], [None, None, 1.0]], m, loop)
    else:  # pragma: no cover - guarded by the public function
        raise ValueError(f"unknown recurrence {recurrence!r}")
    return second @ first


def _final_state_map(loop: Tensor, dt: float, alpha: float, steps: int, recurrence: str) -> Tensor:
    """Return the block of ``H^steps`` that maps the input to the first state, ``(..., m, m)``."""
    m = loop.shape[-1]
    power = torch.linalg.matrix_power(_one_step_operator(loop, dt, alpha, recurrence), steps)
    return power[..., :m, -m:]


def _modal_final_state_map(loop: Tensor, dt: float, alpha: float, steps: int, recurrence: str) -> Tensor | None:
    """Return the final-state map through an eigendecomposition, or ``None`` if it is ill-conditioned."""
    eigenvalues, eigenvectors = torch.linalg.eig(loop)
    try:
        inverse = torch.linalg.inv(eigenvectors)
    except RuntimeError:  # torch.linalg.LinAlgError subclasses RuntimeError
        return None
    condition = torch.linalg.matrix_norm(eigenvectors) * torch.linalg.matrix_norm(inverse)
    if not bool(torch.isfinite(condition)) or float(condition) > MAX_EIGENVECTOR_CONDITION:
        return None

    gains = _final_state_map(eigenvalues.reshape(-1, 1, 1), dt, alpha, steps, recurrence).reshape(-1)
    return ((eigenvectors * gains) @ inverse).real


def dynamic_inversion_matrix(
    W: Tensor,
    B: Tensor,
    alpha: float,
    *,
    dt: float = 0.5,
    steps: int = 1000,
    controller: str = "standard",
) -> Tensor:
    """Return the matrix ``P`` with ``δ_{l-1} = P δ_l`` after ``steps`` Euler updates of linear DI.

    The result is exactly (to rounding) what the step-by-step loop of
    :func:`~dilightning.inversion.dynamic_inversion` with ``method="euler"`` returns for every
    ``δ_l``, for stable, marginally stable and unstable systems alike. It implements the linear
    controller of Podlaski & Machens 2020, Eqs. 5 and 8 (``controller="standard"``) or the
    expanding-layer controller of Eqs. S1-S2 (``controller="expanding"``), integrated as in
    Algorithm 2 before the multiplication by ``g'(a_{l-1})``. Arguments are assumed validated.

    Args:
        W: forward weights, ``(d_l, d_{l-1})``.
        B: feedback weights, ``(d_{l-1}, d_l)``.
        alpha: controller leak ``α ≥ 0``.
        dt: Euler step.
        steps: number of Euler updates.
        controller: ``"standard"`` or ``"expanding"``.

    Returns:
        ``P`` of shape ``(d_{l-1}, d_l)`` in the dtype of ``W``. It is computed in float64.
    """
    W64 = W.detach().to(torch.float64)
    B64 = B.detach().to(torch.float64)
    d_l, d_prev = W64.shape

    # Work in the smaller of the two coordinate systems.
    if d_l <= d_prev:
        loop = W64 @ B64
        recurrence = f"{controller}_range_B"
    else:
        loop = B64 @ W64
        recurrence = f"{controller}_range_Wt"

    state_map = _modal_final_state_map(loop, dt, alpha, steps, recurrence)
    if state_map is None:
        state_map = _final_state_map(loop, dt, alpha, steps, recurrence)

    if recurrence.endswith("range_B"):
        propagation = B64 @ state_map
    else:
        propagation = state_map @ B64
    return propagation.to(W.dtype)
