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
products. For small loops (``m ≤ 16``), and when the eigenvectors are ill-conditioned (a nearly
defective loop product), the same recurrence is instead raised to its power as one dense matrix in
the reduced coordinates.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Above this Frobenius condition number of the eigenvector matrix the modal route loses more than
# about 1e-6 (float64) or 1e-3 (float32) relative accuracy, and a more precise route is used instead.
MAX_EIGENVECTOR_CONDITION = {torch.float64: 1e7, torch.float32: 1e4}


# Up to this reduced size the dense route is cheaper than an eigendecomposition and never less exact.
MAX_DENSE_SIZE = 16


def _operator_coefficients(dt: float, alpha: float, recurrence: str) -> tuple[list[list[float]], list[list[float]]]:
    """Return ``(C, D)`` with the one-step matrix ``H = C ⊗ I + D ⊗ loop`` of a reduced recurrence.

    Every block of ``H`` is ``c I + d · loop`` for scalars ``c`` and ``d``; the comments give the
    state and the two updates of Algorithms 1-2 (Podlaski & Machens 2020) that each block row
    writes out, each update using the value just written by the previous one.
    """
    decay, leak = 1.0 - dt, 1.0 - dt * alpha
    if recurrence == "standard_range_B":
        # State [p, u, δ_l], δ_{l-1} = B p: p ← (1-dt) p + dt u, then u ← (1-dtα) u + dt K p − dt δ_l.
        constant = [[decay, dt, 0.0], [0.0, leak, -dt], [0.0, 0.0, 1.0]]
        loop = [[0.0, 0.0, 0.0], [dt * decay, dt * dt, 0.0], [0.0, 0.0, 0.0]]
    elif recurrence == "standard_range_Wt":
        # State [x, q, c, Bδ_l] with u = W q + c δ_l: x ← (1-dt) x + dt N q + dt c,
        # then q ← (1-dtα) q + dt x and c ← (1-dtα) c − dt Bδ_l.
        constant = [[decay, 0.0, dt, 0.0], [dt * decay, leak, dt * dt, 0.0], [0.0, 0.0, leak, -dt], [0.0, 0.0, 0.0, 1.0]]
        loop = [[0.0, dt, 0.0, 0.0], [0.0, dt * dt, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    elif recurrence == "expanding_range_B":
        # State [r, y, δ_l], δ_{l-1} = B r, δ̃_l = y: r ← (1-dtα) r + dt y − dt δ_l, then y ← (1-dt) y + dt K r.
        constant = [[leak, dt, -dt], [0.0, decay, 0.0], [0.0, 0.0, 1.0]]
        loop = [[0.0, 0.0, 0.0], [dt * leak, dt * dt, -dt * dt], [0.0, 0.0, 0.0]]
    elif recurrence == "expanding_range_Wt":
        # State [x, s, Bδ_l], δ̃_l = W s: x ← (1-dtα) x + dt N s − dt Bδ_l, then s ← (1-dt) s + dt x.
        constant = [[leak, 0.0, -dt], [dt * leak, decay, -dt * dt], [0.0, 0.0, 1.0]]
        loop = [[0.0, dt, 0.0], [0.0, dt * dt, 0.0], [0.0, 0.0, 0.0]]
    else:  # pragma: no cover - guarded by the public function
        raise ValueError(f"unknown recurrence {recurrence!r}")
    return constant, loop


def _one_step_operator(loop: Tensor, dt: float, alpha: float, recurrence: str) -> Tensor:
    """Return the homogeneous one-step matrix of a reduced Euler recurrence.

    ``loop`` is the loop product (``K`` or ``N``) as an ``(m, m)`` matrix, or a batch ``(..., 1, 1)``
    of its eigenvalues for the per-mode operators. The state is a stack of ``m``-blocks whose last
    block is the constant input, so ``H^steps`` maps ``[0, …, 0, input]`` to the final state.
    """
    constant, loop_part = _operator_coefficients(dt, alpha, recurrence)
    C = torch.tensor(constant, dtype=loop.real.dtype, device=loop.device)
    D = torch.tensor(loop_part, dtype=loop.real.dtype, device=loop.device)
    if loop.shape[-1] == 1:
        return C + D * loop  # one mode per leading index: the blocks are scalars
    eye = torch.eye(loop.shape[-1], dtype=loop.dtype, device=loop.device)
    return torch.kron(C, eye) + torch.kron(D, loop)


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
    condition = torch.linalg.vector_norm(eigenvectors) * torch.linalg.vector_norm(inverse)
    if not bool(torch.isfinite(condition)) or float(condition) > MAX_EIGENVECTOR_CONDITION[loop.dtype]:
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
        ``P`` of shape ``(d_{l-1}, d_l)`` in the dtype of ``W``.
    """
    # float64 inputs are solved in float64; float32 inputs in float32 (complex64 modes), which
    # halves the cost of the eigendecomposition for large layers and stays within float32 accuracy.
    compute = torch.float64 if W.dtype == torch.float64 else torch.float32
    Wc = W.detach().to(compute)
    Bc = B.detach().to(compute)
    d_l, d_prev = Wc.shape

    # Work in the smaller of the two coordinate systems.
    if d_l <= d_prev:
        loop = Wc @ Bc
        recurrence = f"{controller}_range_B"
    else:
        loop = Bc @ Wc
        recurrence = f"{controller}_range_Wt"

    state_map = None
    if loop.shape[-1] > MAX_DENSE_SIZE:
        state_map = _modal_final_state_map(loop, dt, alpha, steps, recurrence)
        if state_map is None and compute == torch.float32:
            # Too ill-conditioned for float32 modes: float64 modes are still far cheaper than dense.
            state_map = _modal_final_state_map(loop.to(torch.float64), dt, alpha, steps, recurrence)
            state_map = None if state_map is None else state_map.to(compute)
    if state_map is None:
        # Small or nearly defective loops: the exact power of the whole reduced recurrence, in float64.
        state_map = _final_state_map(loop.to(torch.float64), dt, alpha, steps, recurrence).to(compute)

    if recurrence.endswith("range_B"):
        propagation = Bc @ state_map
    else:
        propagation = state_map @ Bc
    return propagation.to(W.dtype)
