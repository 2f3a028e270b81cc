"""Exact final state of the linear-controller Euler recurrence, without stepping through it.

With a linear controller, ``steps`` explicit Euler updates of Podlaski & Machens 2020, Eqs. 5 and 8
(or of the expanding-layer controller, Eqs. S1-S2) form a linear recurrence with a constant input
``δ_l``. Its final state is therefore a fixed linear map of ``δ_l``: ``δ_{l-1} = P δ_l`` with
``P`` of shape ``(d_{l-1}, d_l)``. This module prepares that map once per weight pair, so a whole
batch of errors costs one matrix product, or a few products with the loop's eigenvectors.

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

import numpy as np
import torch
from torch import Tensor

# Above this 1-norm condition number of the eigenvector matrix the modal route loses more than
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


def _inverse_one_norm_estimate(lu: Tensor, pivots: Tensor) -> float:
    """Estimate ``‖A⁻¹‖₁`` from the LU factors of ``A`` (``(m, m)``, real or complex).

    Hager's method in Higham's form, which LAPACK's ``xGECON`` uses through ``xLACN2``: a few
    solves with ``A`` and ``Aᴴ`` climb towards the column of ``A⁻¹`` with the largest 1-norm.
    The result is a lower bound and usually close. Each solve costs ``O(m²)``.
    """
    size = lu.shape[-1]
    x = torch.full((size, 1), 1.0 / size, dtype=lu.dtype, device=lu.device)
    estimate = 0.0
    for _ in range(5):
        y = torch.linalg.lu_solve(lu, pivots, x)
        magnitude = y.abs()
        norm = float(magnitude.sum())
        if norm <= estimate:
            break
        estimate = norm
        signs = torch.where(magnitude > 0, y / magnitude.clamp_min(torch.finfo(magnitude.dtype).tiny), 1.0).to(lu.dtype)
        z = torch.linalg.lu_solve(lu, pivots, signs, adjoint=True)
        z_magnitude = z.abs()
        column = int(z_magnitude.argmax())
        if float(z_magnitude[column]) <= float((z.conj() * x).sum().real):
            break
        x = torch.zeros_like(x)
        x[column] = 1.0
    # Higham's extra test vector guards against the rare matrices that mislead the climb.
    ramp = 1.0 + torch.arange(size, dtype=lu.real.dtype, device=lu.device) / max(size - 1, 1)
    alternating = (ramp * (1.0 - 2.0 * (torch.arange(size, device=lu.device) % 2))).reshape(size, 1).to(lu.dtype)
    alternative = 2.0 * float(torch.linalg.lu_solve(lu, pivots, alternating).abs().sum()) / (3.0 * size)
    return max(estimate, alternative)


class _ModalMap:
    """The final-state map ``S = V diag(gains) V⁻¹`` of a diagonalizable loop product.

    It contains the eigenvectors ``V`` of the loop product, the LU factors of ``V`` and one gain
    per eigenvalue: the input-to-state entry of that mode's ``steps``-th power. :meth:`matrix`
    forms ``S``, and :meth:`apply` multiplies a few vectors by ``S`` without forming it.
    """

    def __init__(self, eigenvectors: Tensor, lu: Tensor, pivots: Tensor, gains: Tensor) -> None:
        self.eigenvectors = eigenvectors
        self.lu = lu
        self.pivots = pivots
        self.gains = gains

    def apply(self, vectors: Tensor) -> Tensor:
        """Return ``S @ vectors`` for real ``vectors`` of shape ``(m, N)``."""
        modes = torch.linalg.lu_solve(self.lu, self.pivots, vectors.to(self.lu.dtype))
        return (self.eigenvectors @ (self.gains.reshape(-1, 1) * modes)).real.to(vectors.dtype)

    def matrix(self) -> Tensor:
        """Return ``S`` as a real ``(m, m)`` matrix."""
        size = self.eigenvectors.shape[-1]
        identity = torch.eye(size, dtype=self.lu.dtype, device=self.lu.device)
        inverse = torch.linalg.lu_solve(self.lu, self.pivots, identity)
        return ((self.eigenvectors * self.gains) @ inverse).real


def _modal_map(loop: Tensor, dt: float, alpha: float, steps: int, recurrence: str) -> _ModalMap | None:
    """Return the final-state map through an eigendecomposition, or ``None`` if it is ill-conditioned."""
    eigenvalues, eigenvectors = torch.linalg.eig(loop)
    lu, pivots, info = torch.linalg.lu_factor_ex(eigenvectors)
    if int(info) != 0:
        return None  # singular eigenvector matrix: the loop product is defective
    # NaN (from non-finite factors) fails the comparison too.
    condition = float(eigenvectors.abs().sum(0).max()) * _inverse_one_norm_estimate(lu, pivots)
    if not condition < MAX_EIGENVECTOR_CONDITION[loop.dtype]:
        return None

    gains = _final_state_map(eigenvalues.reshape(-1, 1, 1), dt, alpha, steps, recurrence).reshape(-1)
    modal = _ModalMap(eigenvectors, lu, pivots, gains)
    if loop.dtype == torch.float32 and _rounding_tilt(modal, eigenvalues, dt, alpha, steps, recurrence) > MAX_FLOAT32_TILT:
        return None
    return modal


# Float32 modes are used only if eigenvalue errors at the level of float32 rounding change the
# final state by at most this fraction (about 0.06 degrees).
MAX_FLOAT32_TILT = 1e-3


def _rounding_tilt(modal: _ModalMap, eigenvalues: Tensor, dt: float, alpha: float, steps: int, recurrence: str) -> float:
    """Return the relative change of the final state when float32-sized errors hit the eigenvalues.

    Near a marginally stable mode (``α = 0`` and a loop eigenvalue near zero) the gain of ``steps``
    Euler updates changes by up to ``(steps · dt)²`` per unit of eigenvalue. Eigenvalues of a
    cluster with nearly dependent eigenvectors then receive different rounding errors, and
    ``V diag(gains) V⁻¹`` can tilt by a degree. This check moves every eigenvalue by its own random
    complex amount of a few float32 rounding units and measures the change of ``S z`` for two
    random vectors ``z``. Single precision suffices: the change it must detect, ``1e-3``, is far
    above the rounding of the gains. The random numbers have a fixed seed, so the decision is
    repeatable.
    """
    size = eigenvalues.shape[0]
    generator = torch.Generator(device=eigenvalues.device).manual_seed(0)
    real_dtype = eigenvalues.real.dtype
    scale = 4.0 * torch.finfo(torch.float32).eps * max(float(eigenvalues.abs().max()), 1.0)
    noise = 2.0 * torch.rand(2, size, generator=generator, dtype=real_dtype, device=eigenvalues.device) - 1.0
    moved_points = (eigenvalues + scale * torch.complex(noise[0], noise[1])).reshape(-1, 1, 1)
    moved = _final_state_map(moved_points, dt, alpha, steps, recurrence).reshape(-1)
    probes = torch.randn(size, 2, generator=generator, dtype=real_dtype, device=eigenvalues.device)
    modes = torch.linalg.lu_solve(modal.lu, modal.pivots, probes.to(modal.lu.dtype))
    state = modal.eigenvectors @ (modal.gains.reshape(-1, 1) * modes)
    change = modal.eigenvectors @ ((moved - modal.gains).reshape(-1, 1) * modes)
    return float((torch.linalg.vector_norm(change, dim=0) / torch.linalg.vector_norm(state, dim=0)).max())


def _reduced_problem(W: Tensor, B: Tensor, controller: str) -> tuple[Tensor, Tensor, str]:
    """Return ``(Bc, loop, recurrence)`` in the compute dtype and the smaller coordinate system."""
    # float64 inputs are solved in float64; float32 inputs in float32 (complex64 modes), which
    # halves the cost of the eigendecomposition for large layers and stays within float32 accuracy.
    compute = torch.float64 if W.dtype == torch.float64 else torch.float32
    Wc = W.detach().to(compute)
    Bc = B.detach().to(compute)
    d_l, d_prev = Wc.shape
    if d_l <= d_prev:
        return Bc, Wc @ Bc, f"{controller}_range_B"
    return Bc, Bc @ Wc, f"{controller}_range_Wt"


def _final_state_operator(loop: Tensor, dt: float, alpha: float, steps: int, recurrence: str) -> _ModalMap | Tensor:
    """Return the map from the input to the final reduced state: modal if possible, else dense.

    The dense result is an ``(m, m)`` matrix, computed in float64 from the whole reduced recurrence
    and returned in the dtype of ``loop``.
    """
    if not bool(torch.isfinite(loop).all()):
        # Non-finite weights: NaN everywhere, as the Euler loop would give, instead of a LAPACK error.
        return torch.full_like(loop, float("nan"))
    if loop.shape[-1] > MAX_DENSE_SIZE:
        modal = _modal_map(loop, dt, alpha, steps, recurrence)
        if modal is None and loop.dtype == torch.float32:
            # Too ill-conditioned for float32 modes: float64 modes are still far cheaper than dense.
            modal = _modal_map(loop.to(torch.float64), dt, alpha, steps, recurrence)
        if modal is not None:
            return modal
    # Small or nearly defective loops: the exact power of the whole reduced recurrence, in float64.
    # NOTE: repeated squaring loses accuracy when the loop product is large (norm above about 1e3)
    # and far from normal. The Euler loop stays accurate there.
    if loop.device.type == "cpu":
        return _dense_final_state_map_numpy(loop, dt, alpha, steps, recurrence)
    return _final_state_map(loop.to(torch.float64), dt, alpha, steps, recurrence).to(loop.dtype)


def _dense_final_state_map_numpy(loop: Tensor, dt: float, alpha: float, steps: int, recurrence: str) -> Tensor:
    """Return :func:`_final_state_map` of a CPU loop product, computed with numpy in float64.

    Small loops (``m ≤ 16``, such as the 10-unit output layers) take this route after every online
    update. There each torch call costs more than its arithmetic: numpy's ``matrix_power`` of the
    30 × 30 recurrence took 33 µs here, torch's 80-190 µs.
    """
    constant, loop_part = _operator_coefficients(dt, alpha, recurrence)
    size = loop.shape[-1]
    product = loop.detach().to(torch.float64).numpy()
    blocks = len(constant)
    one_step = np.zeros((blocks * size, blocks * size))
    # Block (i, j) is constant[i][j] I + loop_part[i][j] K, written through a 4-d view of the matrix.
    one_step.reshape(blocks, size, blocks, size)[...] = (
        np.asarray(constant)[:, None, :, None] * np.eye(size)[None, :, None, :]
        + np.asarray(loop_part)[:, None, :, None] * product[None, :, None, :]
    )
    with np.errstate(over="ignore", invalid="ignore"):  # an unstable loop overflows, as Euler does
        power = np.linalg.matrix_power(one_step, steps)
    return torch.from_numpy(np.ascontiguousarray(power[:size, -size:])).to(loop.dtype)


class DynamicInversionOperator:
    """The exact linear map ``δ_l ↦ δ_{l-1}`` of linear DI for one weight pair, prepared once.

    Built by :func:`dynamic_inversion_operator`. Calling it on a batch of errors gives the same
    result as multiplying by :meth:`matrix`, without forming ``P``: the errors go through the
    reduced final-state map ``S`` and ``B``. When the batch is smaller than a diagonalizable loop
    product, they go through its eigenvectors instead of ``S``: ``O(m² N)`` after the
    eigendecomposition, not the ``O(m³)`` of forming ``S``. This matters for the autoencoder's
    batches of 100 through 500-unit layers.
    """

    def __init__(self, feedback: Tensor, operator: _ModalMap | Tensor, recurrence: str, dtype: torch.dtype) -> None:
        self._feedback = feedback
        self._operator = operator
        self._range_B = recurrence.endswith("range_B")
        self._dtype = dtype

    def matrix(self) -> Tensor:
        """Return ``P`` of shape ``(d_{l-1}, d_l)`` in the dtype of ``W``."""
        operator = self._operator
        state_map = operator.matrix().to(self._feedback.dtype) if isinstance(operator, _ModalMap) else operator
        propagation = self._feedback @ state_map if self._range_B else state_map @ self._feedback
        return propagation.to(self._dtype)

    def __call__(self, delta: Tensor) -> Tensor:
        """Return ``δ_{l-1}``, ``(N, d_{l-1})``, for errors ``δ_l`` of shape ``(N, d_l)``."""
        operator = self._operator
        if isinstance(operator, _ModalMap) and delta.shape[0] >= operator.eigenvectors.shape[-1]:
            operator = operator.matrix().to(self._feedback.dtype)  # S once is cheaper for large batches
        errors = delta.to(self._feedback.dtype).transpose(0, 1)  # (d_l, N); gradients reach delta
        apply = operator.apply if isinstance(operator, _ModalMap) else operator.matmul
        if self._range_B:
            result = self._feedback @ apply(errors)  # B S δ_l, S in layer l's coordinates
        else:
            result = apply(self._feedback @ errors)  # S B δ_l, S in layer l-1's coordinates
        return result.transpose(0, 1).to(self._dtype)


def dynamic_inversion_operator(
    W: Tensor,
    B: Tensor,
    alpha: float,
    *,
    dt: float = 0.5,
    steps: int = 1000,
    controller: str = "standard",
) -> DynamicInversionOperator:
    """Return the exact map ``δ_l ↦ δ_{l-1}`` after ``steps`` Euler updates of linear DI.

    The map reproduces (to rounding) what the step-by-step loop of
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
    """
    Bc, loop, recurrence = _reduced_problem(W, B, controller)
    return DynamicInversionOperator(Bc, _final_state_operator(loop, dt, alpha, steps, recurrence), recurrence, W.dtype)


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

    The matrix of :func:`dynamic_inversion_operator` (same arguments), ``(d_{l-1}, d_l)`` in the
    dtype of ``W``.
    """
    return dynamic_inversion_operator(W, B, alpha, dt=dt, steps=steps, controller=controller).matrix()
