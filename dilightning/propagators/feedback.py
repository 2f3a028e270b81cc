"""Feedback matrices owned by a propagator: buffers, initialization and stability upkeep.

Initializations (Podlaski & Machens 2020, Sections 3.2 and 5, 7.7.2):

- ``"tr"`` (Tr-Init): ``B_l = −W_l(0)ᵀ``, which makes ``W_l B_l`` negative semi-definite;
- ``"scaled_tr"``: ``B_l = −k W_l(0)ᵀ`` with gain ``k`` (the paper's FA variant uses ``k = 50``);
- ``"random"`` (R-Init): ``B_l ~ U(−r, r)``; for the inversion rules it is then stabilized by
  smoothed-spectral-abscissa descent so that the DI dynamics of every layer are stable.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from dilightning.inversion import max_real_eigenvalue, optimize_feedback_ssa
from dilightning.inversion._validation import check_alpha
from dilightning.propagators.base import ErrorPropagator

logger = logging.getLogger(__name__)

FEEDBACK_INITS = ("tr", "scaled_tr", "random")


def check_feedback_init(feedback_init: str) -> str:
    """Return ``feedback_init`` after checking that it names a known initialization."""
    if feedback_init not in FEEDBACK_INITS:
        raise ValueError(f"unknown feedback_init {feedback_init!r}; valid choices are {list(FEEDBACK_INITS)}")
    return feedback_init


def initial_feedback(
    weight: Tensor, feedback_init: str, *, scale: float, gain: float, generator: torch.Generator | None
) -> Tensor:
    """Return a feedback matrix ``(d_{l-1}, d_l)`` for ``weight`` ``(d_l, d_{l-1})``, before any stabilization."""
    if feedback_init == "tr":
        return -weight.detach().transpose(0, 1).clone()
    if feedback_init == "scaled_tr":
        return -gain * weight.detach().transpose(0, 1).clone()
    shape = (weight.shape[1], weight.shape[0])
    uniform = torch.rand(shape, generator=generator, dtype=torch.float64)
    return ((2.0 * uniform - 1.0) * scale).to(dtype=weight.dtype, device=weight.device)


class FeedbackPropagator(ErrorPropagator):
    """Propagator with one feedback matrix ``B_l`` per layer ``l = 2 … L``.

    ``B_l`` (shape ``(d_{l-1}, d_l)``) is the buffer ``feedback_<l>``.

    Args:
        layer_sizes: ``[d_0, …, d_L]``.
        feedback_init: ``"tr"``, ``"scaled_tr"`` or ``"random"``.
        feedback_scale: ``r`` of ``U(−r, r)`` for ``"random"``; the class default if ``None``.
        feedback_gain: ``k`` of ``−k Wᵀ`` for ``"scaled_tr"``.
        max_delta_norm: see :class:`ErrorPropagator`.
    """

    default_feedback_init: ClassVar[str] = "tr"
    default_feedback_scale: ClassVar[float] = 0.01
    options: ClassVar[tuple[str, ...]] = (
        *ErrorPropagator.options,
        "feedback_init",
        "feedback_scale",
        "feedback_gain",
    )

    def __init__(
        self,
        layer_sizes: Sequence[int],
        *,
        feedback_init: str | None = None,
        feedback_scale: float | None = None,
        feedback_gain: float = 1.0,
        max_delta_norm: float | None = None,
    ) -> None:
        super().__init__(layer_sizes, max_delta_norm=max_delta_norm)
        self.feedback_init = check_feedback_init(feedback_init or self.default_feedback_init)
        self.feedback_scale = float(self.default_feedback_scale if feedback_scale is None else feedback_scale)
        if not self.feedback_scale > 0:
            raise ValueError(f"feedback_scale must be > 0, got {feedback_scale}")
        self.feedback_gain = float(feedback_gain)
        for index in range(1, self.num_layers):
            shape = (self.layer_sizes[index], self.layer_sizes[index + 1])
            self.register_buffer(f"feedback_{index + 1}", torch.zeros(shape))

    def feedback(self, index: int) -> Tensor:
        """Return ``B`` for ``weights[index]`` (that is ``B_{index+1}``), ``index ≥ 1``."""
        return getattr(self, f"feedback_{index + 1}")

    def set_feedback(self, index: int, value: Tensor) -> None:
        """Overwrite ``B`` of ``weights[index]`` in place, keeping the buffer's dtype and device."""
        self.feedback(index).copy_(value)

    def feedback_matrices(self) -> dict[str, Tensor]:
        """Return the feedback matrices by layer name (``"layer_2"`` … ``"layer_L"``)."""
        return {f"layer_{index + 1}": self.feedback(index) for index in range(1, self.num_layers)}

    def _prepare_feedback(self, index: int, weight: Tensor, feedback: Tensor) -> Tensor:
        """Hook for subclasses to adjust a freshly initialized feedback matrix."""
        return feedback

    def reset_feedback(self, weights: Sequence[Tensor], generator: torch.Generator | None = None) -> None:
        """Initialize every ``B_l`` from the initial forward weights ``[W_1, …, W_L]``."""
        for index in range(1, self.num_layers):
            feedback = initial_feedback(
                weights[index],
                self.feedback_init,
                scale=self.feedback_scale,
                gain=self.feedback_gain,
                generator=generator,
            )
            self.set_feedback(index, self._prepare_feedback(index, weights[index], feedback))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, feedback_init={self.feedback_init!r}"


class StabilizedFeedbackPropagator(FeedbackPropagator):
    """Feedback propagator whose rule runs (or solves) the DI controller, so its stability matters.

    R-Init feedback is stabilized by SSA descent at initialization, and
    :meth:`restabilize` repeats that during training whenever ``λmax ≥ 0``.

    Args:
        alpha: controller leak ``α ≥ 0`` (Podlaski & Machens 2020, Eq. 8).
        ssa_target: spectral abscissa that SSA descent aims below. For an expanding layer with the
            standard controller ``−α`` is always an eigenvalue, so the target there is ``−α/2``
            whenever ``ssa_target ≤ −α``.
        Other arguments as for :class:`FeedbackPropagator`.
    """

    options: ClassVar[tuple[str, ...]] = (*FeedbackPropagator.options, "alpha", "ssa_target")

    def __init__(
        self,
        layer_sizes: Sequence[int],
        *,
        alpha: float = 0.0,
        ssa_target: float = -0.01,
        feedback_init: str | None = None,
        feedback_scale: float | None = None,
        feedback_gain: float = 1.0,
        max_delta_norm: float | None = None,
    ) -> None:
        super().__init__(
            layer_sizes,
            feedback_init=feedback_init,
            feedback_scale=feedback_scale,
            feedback_gain=feedback_gain,
            max_delta_norm=max_delta_norm,
        )
        self.alpha = check_alpha(alpha)
        if not ssa_target < 0:
            raise ValueError(f"ssa_target must be < 0 (a stable spectral abscissa), got {ssa_target}")
        self.ssa_target = float(ssa_target)
        # A buffer, so a resumed run continues the count of its checkpoint.
        self.register_buffer("restabilizations", torch.zeros((), dtype=torch.long))

    @property
    def restabilization_count(self) -> int:
        """Number of SSA repairs of unstable feedback since initialization."""
        return int(self.restabilizations)

    def layer_controller(self, index: int) -> str:
        """Return the controller (``"standard"`` or ``"expanding"``) that ``weights[index]`` uses."""
        return "standard"

    def _layer_target(self, index: int) -> float:
        d_l, d_prev = self.layer_sizes[index + 1], self.layer_sizes[index]
        if self.layer_controller(index) == "standard" and d_l > d_prev and self.alpha > 0 and self.ssa_target <= -self.alpha:
            return -0.5 * self.alpha
        return self.ssa_target

    def stabilize(self, index: int, weight: Tensor, feedback: Tensor) -> Tensor:
        """Return ``feedback`` after SSA descent has made the layer's ``λmax`` negative."""
        return optimize_feedback_ssa(
            weight.detach(),
            feedback,
            self.alpha,
            controller=self.layer_controller(index),
            target=self._layer_target(index),
        )

    def _prepare_feedback(self, index: int, weight: Tensor, feedback: Tensor) -> Tensor:
        if self.feedback_init == "random":
            return self.stabilize(index, weight, feedback)
        return feedback

    def max_real_eigenvalues(self, weights: Sequence[Tensor]) -> dict[str, float]:
        """Return ``λmax`` of Eq. S24 for every layer with feedback, keyed ``"layer_2"`` … ``"layer_L"``."""
        return {
            f"layer_{index + 1}": max_real_eigenvalue(
                weights[index].detach(), self.feedback(index), self.alpha, controller=self.layer_controller(index)
            )
            for index in range(1, self.num_layers)
        }

    def restabilize(self, weights: Sequence[Tensor], eigenvalues: dict[str, float] | None = None) -> list[str]:
        """Re-run SSA descent for every layer whose ``λmax ≥ 0`` and return the names of those layers.

        Raises :class:`~dilightning.inversion.FeedbackStabilizationError` if SSA fails.
        """
        eigenvalues = eigenvalues if eigenvalues is not None else self.max_real_eigenvalues(weights)
        repaired = []
        for index in range(1, self.num_layers):
            name = f"layer_{index + 1}"
            if eigenvalues[name] >= 0:
                self.set_feedback(index, self.stabilize(index, weights[index], self.feedback(index)))
                logger.info("re-stabilized feedback of %s (lambda_max was %.3g)", name, eigenvalues[name])
                repaired.append(name)
        self.restabilizations += len(repaired)
        return repaired

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha}"
