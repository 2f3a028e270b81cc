"""Linear stability of the DI controller and its repair by smoothed-spectral-abscissa descent.

The linearized backward-pass dynamics of one layer pair are ``d[δ_{l-1}; u]/dt = M [δ_{l-1}; u] + c``
with the block matrix ``M`` of Podlaski & Machens 2020, Eq. S24. The dynamics settle when the
spectral abscissa (largest real part of an eigenvalue) of ``M`` is negative. Random feedback is
usually unstable, so R-Init lowers the smoothed spectral abscissa (SSA) of ``M`` by gradient
descent on ``B`` alone (Vanbiervliet et al. 2009; Hennequin et al. 2014).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.linalg import solve_continuous_lyapunov
from scipy.optimize import brentq
from torch import Tensor

from dilightning.inversion._validation import check_alpha, check_chain, check_layer_pair, check_matrix
from dilightning.inversion.dynamics import check_controller

logger = logging.getLogger(__name__)


class FeedbackStabilizationError(RuntimeError):
    """Raised when SSA descent cannot bring the spectral abscissa below its target."""


def _check_system(W: Tensor | Sequence[Tensor], B: Tensor, controller: str) -> list[Tensor]:
    """Validate ``W``/``B`` for one layer pair or a single-loop chain and return the weights as a list."""
    check_controller(controller)
    if isinstance(W, Tensor):
        check_layer_pair(W, B)
        return [W]
    weights = list(W)
    check_chain(weights, name="W")
    if controller != "standard":
        raise ValueError("a single-loop chain (W given as a list) only supports controller='standard'")
    check_matrix("B", B)
    expected = (weights[0].shape[1], weights[-1].shape[0])
    if tuple(B.shape) != expected:
        raise ValueError(f"B has shape {tuple(B.shape)} but the single-loop feedback must be (d_1, d_L) = {expected}")
    return weights


def system_matrix(W: Tensor | Sequence[Tensor], B: Tensor, alpha: float, *, controller: str = "standard") -> Tensor:
    """Build the block matrix of the linearized DI dynamics.

    For one layer pair (``W`` a matrix ``(d_l, d_{l-1})``, ``B`` of shape ``(d_{l-1}, d_l)``) this is
    Podlaski & Machens 2020, Eq. S24, with state ``[δ_{l-1}; u]``::

        standard:  [[−I, B], [W, −α I]]        expanding (Eqs. S1-S2):  [[−α I, B], [W, −I]]

    For single-loop DI, pass ``W = [W_2, …, W_L]`` and the loop feedback ``B`` of shape
    ``(d_1, d_L)``; the state is ``[δ_1; …; δ_{L-1}; u]`` (Eqs. S3-S5 linearized at zero, where
    ``g'(0) = 1`` for tanh and the identity).

    Returns:
        A square matrix of size ``d_{l-1} + d_l`` (or ``d_1 + … + d_L``) in the dtype of ``B``.
    """
    alpha = check_alpha(alpha)
    weights = _check_system(W, B, controller)
    sizes = [weights[0].shape[1]] + [weight.shape[0] for weight in weights]
    offsets = np.cumsum([0] + sizes).tolist()
    total = offsets[-1]
    matrix = torch.zeros(total, total, dtype=B.dtype, device=B.device)

    state_decay, control_decay = (1.0, alpha) if controller == "standard" else (alpha, 1.0)
    diagonal = torch.full((total,), -1.0, dtype=B.dtype, device=B.device)
    diagonal[: sizes[0]] = -state_decay
    diagonal[offsets[-2] :] = -control_decay
    matrix.diagonal().copy_(diagonal)

    matrix[: sizes[0], offsets[-2] :] = B
    for j, weight in enumerate(weights):
        matrix[offsets[j + 1] : offsets[j + 2], offsets[j] : offsets[j + 1]] = weight.to(B.dtype)
    return matrix


def _reduced_spectrum(W: Tensor, B: Tensor, alpha: float, controller: str) -> np.ndarray:
    """Return the eigenvalues of one layer pair's Eq. S24 matrix as complex128 (see :func:`system_eigenvalues`).

    The matrices are small, so numpy computes them on the CPU. One LAPACK call there costs a
    fraction of the per-call overhead of the equivalent torch operations, which matters when the
    spectrum is checked after every online update.
    """
    W64 = W.detach().to(device="cpu", dtype=torch.float64).numpy()
    B64 = B.detach().to(device="cpu", dtype=torch.float64).numpy()
    d_l, d_prev = W64.shape
    product = W64 @ B64 if d_l <= d_prev else B64 @ W64
    mu = np.linalg.eigvals(product).astype(np.complex128)
    root = np.sqrt((1.0 - alpha) ** 2 + 4.0 * mu)
    # The leftover eigenvalue belongs to the bigger block: the state block (decay 1 for the standard
    # controller) when d_(l-1) > d_l, the control block otherwise.
    state_decay, control_decay = (1.0, alpha) if controller == "standard" else (alpha, 1.0)
    leftover = -state_decay if d_prev > d_l else -control_decay
    upper, lower = (-(1.0 + alpha) + root) / 2.0, (-(1.0 + alpha) - root) / 2.0
    return np.concatenate([upper, lower, np.full(abs(d_l - d_prev), leftover, dtype=np.complex128)])


def system_eigenvalues(W: Tensor, B: Tensor, alpha: float, *, controller: str = "standard") -> Tensor:
    """Return all eigenvalues of the Eq. S24 matrix of one layer pair from its smaller loop product.

    An eigenvector ``[x; u]`` of ``[[−I, B], [W, −α I]]`` satisfies ``W B u = (λ + 1)(λ + α) u``, so
    each eigenvalue ``μ`` of the ``m × m`` product ``K`` (``W B`` if ``d_l ≤ d_{l-1}``, else ``B W``,
    which has the same non-zero eigenvalues) gives the two roots of ``λ² + (1 + α) λ + α − μ = 0``.
    The other ``|d_l − d_{l-1}|`` eigenvalues are ``−1`` (``x`` in the null space of ``W``) when
    ``d_{l-1} > d_l`` and ``−α`` (``u`` in the null space of ``B``) when ``d_l > d_{l-1}``. The
    expanding controller ``[[−α I, B], [W, −I]]`` has the same quadratic with the roles of ``−1``
    and ``−α`` swapped. This costs an ``m × m`` eigendecomposition instead of one of size
    ``d_l + d_{l-1}``; it is computed in float64 on the CPU.

    Returns:
        ``d_l + d_{l-1}`` complex eigenvalues (complex128) on the device of ``W``.
    """
    check_controller(controller)
    check_layer_pair(W, B)
    alpha = check_alpha(alpha)
    return torch.from_numpy(_reduced_spectrum(W, B, alpha, controller)).to(W.device)


def max_real_eigenvalue(W: Tensor | Sequence[Tensor], B: Tensor, alpha: float, *, controller: str = "standard") -> float:
    """Return the spectral abscissa ``λmax`` of :func:`system_matrix` (negative means stable).

    For one layer pair it comes from :func:`system_eigenvalues` (an eigendecomposition of the
    smaller loop product); for a single-loop chain from the eigenvalues of the whole system matrix.
    Both are computed in float64.
    """
    weights = _check_system(W, B, controller)
    alpha = check_alpha(alpha)
    if len(weights) == 1 and isinstance(W, Tensor):
        return float(_reduced_spectrum(W, B, alpha, controller).real.max())
    matrix = system_matrix(W, B, alpha, controller=controller).detach().to(device="cpu", dtype=torch.float64)
    return float(np.linalg.eigvals(matrix.numpy()).real.max())


def _spectral_abscissa(matrix: np.ndarray) -> float:
    return float(np.linalg.eigvals(matrix).real.max())


class _ModalLyapunov:
    """Lyapunov solutions for every shift ``s`` from one eigendecomposition ``A = V Λ V^{-1}``.

    With ``C = V^{-1} V^{-H}`` and ``G = V^H V``, ``P(s) = V X V^H`` with
    ``X_ij = −C_ij / (λ_i + conj(λ_j) − 2s)`` and ``Q(s) = V^{-H} Y V^{-1}`` with
    ``Y_ij = −G_ij / (conj(λ_i) + λ_j − 2s)``. Each ``tr P(s)`` then costs ``O(n²)`` instead of a
    Lyapunov solve.
    """

    def __init__(self, matrix: np.ndarray) -> None:
        eigenvalues, vectors = np.linalg.eig(matrix)
        self.inverse = np.linalg.inv(vectors)
        self.vectors = vectors
        self.condition = float(np.linalg.norm(vectors) * np.linalg.norm(self.inverse))
        self.eigenvalues = eigenvalues
        self.c_matrix = self.inverse @ self.inverse.conj().T
        self.g_matrix = vectors.conj().T @ vectors
        self.pair_sums = eigenvalues[:, None] + eigenvalues.conj()[None, :]

    def trace(self, shift: float) -> float:
        x_matrix = -self.c_matrix / (self.pair_sums - 2.0 * shift)
        return float(np.real(np.sum(x_matrix * self.g_matrix.T)))

    def gradient(self, shift: float) -> np.ndarray:
        x_matrix = -self.c_matrix / (self.pair_sums - 2.0 * shift)
        y_matrix = -self.g_matrix / (self.pair_sums.conj() - 2.0 * shift)
        product = y_matrix @ x_matrix
        full = self.inverse.conj().T @ product @ self.vectors.conj().T
        return np.real(full) / float(np.real(np.trace(product)))


class _DenseLyapunov:
    """Lyapunov solutions by Bartels-Stewart (``scipy.linalg.solve_continuous_lyapunov``) at each shift."""

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = matrix
        self.identity = np.eye(matrix.shape[0])

    def trace(self, shift: float) -> float:
        return float(np.trace(solve_continuous_lyapunov(self.matrix - shift * self.identity, -self.identity)))

    def gradient(self, shift: float) -> np.ndarray:
        shifted = self.matrix - shift * self.identity
        controllability = solve_continuous_lyapunov(shifted, -self.identity)
        observability = solve_continuous_lyapunov(shifted.T, -self.identity)
        product = observability @ controllability
        return product / np.trace(product)


# Above this eigenvector condition number the modal Lyapunov solutions are not trusted.
_MAX_MODAL_CONDITION = 1e6


def smoothed_spectral_abscissa(matrix: np.ndarray, epsilon: float) -> tuple[float, np.ndarray]:
    """Return the smoothed spectral abscissa of ``matrix`` and its gradient with respect to it.

    The SSA ``s̃`` is the root of ``f(s) = ∫_0^∞ ‖exp((A − sI) t)‖_F² dt = 1/ε``
    (Vanbiervliet et al. 2009), where ``f(s) = tr P(s)`` and ``P`` solves the Lyapunov equation
    ``(A − sI) P + P (A − sI)ᵀ = −I``. It is an upper bound on the spectral abscissa that tends to
    it as ``ε → 0``. Its gradient is ``Q P / tr(Q P)`` with ``Q`` the solution of the dual
    equation ``(A − sI)ᵀ Q + Q (A − sI) = −I`` (Hennequin et al. 2014). The Lyapunov equations are
    solved through an eigendecomposition of ``A`` when its eigenvectors are well conditioned and
    with ``scipy.linalg.solve_continuous_lyapunov`` otherwise.

    Args:
        matrix: square float64 array ``A``.
        epsilon: smoothing ``ε > 0``; smaller is closer to the spectral abscissa.

    Returns:
        ``(s̃, ∂s̃/∂A)`` with the gradient of the same shape as ``matrix``.
    """
    size = matrix.shape[0]
    abscissa = _spectral_abscissa(matrix)
    solver: _ModalLyapunov | _DenseLyapunov = _ModalLyapunov(matrix)
    if not solver.condition < _MAX_MODAL_CONDITION:
        solver = _DenseLyapunov(matrix)

    def log_excess(shift: float) -> float:
        return math.log(max(solver.trace(shift), 1e-300)) + math.log(epsilon)

    # f(s) >= 1/(2 (s - abscissa)), so the root lies right of abscissa + ε/2; widen until f(s) < 1/ε.
    low = abscissa + 0.5 * epsilon
    width = 0.5 * epsilon * size
    while log_excess(abscissa + width) > 0:
        width *= 2.0
    shift = brentq(log_excess, low, abscissa + width, xtol=1e-14, rtol=1e-12) if log_excess(low) > 0 else low
    return shift, solver.gradient(shift)


def _is_unstabilizable(weights: list[Tensor], alpha: float, controller: str, target: float) -> str | None:
    """Return why no ``B`` can bring ``λmax`` below ``target``, or ``None`` if that is not known."""
    if controller != "standard" or len(weights) != 1:
        return None
    d_l, d_prev = weights[0].shape
    if d_l > d_prev and -alpha >= target:
        # W B has rank d_(l-1) < d_l, so (λ + α)(λ + 1) = 0 has the root λ = −α for every B.
        return (
            f"an expanding layer (d_l={d_l} > d_(l-1)={d_prev}) always has the eigenvalue -alpha={-alpha:.4g}, "
            f"which is not below target={target:.4g}; use a larger alpha, a target above -alpha, "
            "or controller='expanding'"
        )
    return None


def optimize_feedback_ssa(
    W: Tensor | Sequence[Tensor],
    B: Tensor,
    alpha: float,
    *,
    controller: str = "standard",
    target: float = -0.01,
    epsilon: float | None = None,
    max_steps: int = 2000,
    initial_step: float = 0.05,
) -> Tensor:
    """Lower the spectral abscissa of the DI dynamics below ``target`` by SSA descent on ``B`` only.

    Follows Podlaski & Machens 2020, Section 7.5: gradient descent of the smoothed spectral
    abscissa (:func:`smoothed_spectral_abscissa`) of the system matrix of Eq. S24
    (:func:`system_matrix`), with respect to the feedback block ``B`` alone, until the true
    spectral abscissa ``λmax`` is below ``target``. Each step moves ``B`` along the normalized
    negative gradient; the step length grows by 1.5 after a step that lowers the SSA and halves
    otherwise. When the descent settles in a minimum of the SSA that is not yet below ``target``,
    ``ε`` is divided by 10, which brings the SSA closer to ``λmax``, and the descent continues.
    No random numbers are drawn, so the result is deterministic.

    Args:
        W: forward weights ``(d_l, d_{l-1})``, or ``[W_2, …, W_L]`` for single-loop DI.
        B: initial feedback, ``(d_{l-1}, d_l)`` (or ``(d_1, d_L)`` for single-loop DI).
        alpha: controller leak ``α ≥ 0``.
        controller: ``"standard"`` or ``"expanding"`` (see :func:`system_matrix`).
        target: the spectral abscissa to reach (strictly below it).
        epsilon: initial SSA smoothing ``ε``; by default ``2 max(|target|, 1e-3) / n`` for a system
            of size ``n``, which puts the SSA within about ``|target|`` of ``λmax``.
        max_steps: maximum number of descent steps, rejected ones included.
        initial_step: first step length, in units of ``max(‖B‖_F, 0.1)``.

    Returns:
        The stabilized feedback, same shape, dtype and device as ``B`` (``B`` itself is unchanged).

    Raises:
        FeedbackStabilizationError: if ``λmax`` is still ``≥ target`` after ``max_steps`` steps, or the
            system cannot be stabilized through ``B`` at all.
    """
    alpha = check_alpha(alpha)
    weights = _check_system(W, B, controller)
    if not math.isfinite(target):
        raise ValueError(f"target must be a finite number, got {target}")
    if epsilon is not None and not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    reason = _is_unstabilizable(weights, alpha, controller, target)
    if reason is not None:
        raise FeedbackStabilizationError(f"cannot stabilize the dynamics: {reason}")

    rows, columns = B.shape
    matrix = system_matrix(weights if len(weights) > 1 else weights[0], B, alpha, controller=controller)
    matrix = matrix.detach().to(device="cpu", dtype=torch.float64).numpy().copy()
    feedback = matrix[:rows, -columns:]  # a view: updating it updates the system matrix
    if epsilon is None:
        epsilon = 2.0 * max(abs(target), 1e-3) / matrix.shape[0]
    abscissa = start = _spectral_abscissa(matrix)
    smoothed, gradient = smoothed_spectral_abscissa(matrix, epsilon)
    first_step = initial_step * max(float(np.linalg.norm(feedback)), 0.1)
    step = first_step

    for _ in range(max_steps):
        if abscissa < target:
            break
        direction = gradient[:rows, -columns:]
        norm = float(np.linalg.norm(direction))
        if norm == 0.0 or step < 1e-10 * first_step:
            # A minimum of this SSA that is not stable enough: sharpen the smoothing and go on.
            epsilon *= 0.1
            smoothed, gradient = smoothed_spectral_abscissa(matrix, epsilon)
            step = first_step
            continue
        previous = feedback.copy()
        feedback -= (step / norm) * direction
        candidate, candidate_gradient = smoothed_spectral_abscissa(matrix, epsilon)
        if candidate < smoothed:
            smoothed, gradient = candidate, candidate_gradient
            abscissa = _spectral_abscissa(matrix)
            step *= 1.5
        else:
            feedback[...] = previous
            step *= 0.5

    if abscissa >= target:
        raise FeedbackStabilizationError(
            f"SSA descent on B stopped at lambda_max={abscissa:.4g} (started at {start:.4g}), not below "
            f"target={target:.4g}, after {max_steps} steps; raise max_steps, use a larger alpha or start from "
            "B = -W.T (Tr-Init)"
        )
    logger.debug("SSA descent moved lambda_max from %.4g to %.4g", start, abscissa)
    return torch.as_tensor(feedback.copy(), dtype=B.dtype, device=B.device)
