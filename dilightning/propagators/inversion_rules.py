"""Non-dynamic and dynamic inversion, layer by layer (sequential) or all at once (repeat layer).

Podlaski & Machens 2020, Section 4: sequential DI inverts one layer pair at a time from the output
down; the linearized treatment of nonlinearities (Eq. 17) multiplies each inverted error by
``g'(a_{l-1})``, while the nonlinear controller (Eq. 14/16) puts ``g`` inside the dynamics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor

from dilightning.inversion import dynamic_inversion, non_dynamic_inversion, repeat_layer_inversion
from dilightning.inversion._validation import check_dt, check_steps
from dilightning.inversion.dynamics import METHODS
from dilightning.propagators.base import ForwardCache, propagate_layerwise
from dilightning.propagators.feedback import StabilizedFeedbackPropagator


class NDI(StabilizedFeedbackPropagator):
    """Non-dynamic inversion: the steady state of the linear controller, solved directly.

    ``δ_{l-1} = B_l (W_l B_l − α I)^{-1} δ_l ◦ g'(a_{l-1})`` (Eq. 17; Algorithm 5 for the form used
    when ``d_l > d_{l-1}``).
    """

    name: ClassVar[str] = "NDI"

    def hidden_errors(self, weights: Sequence[Tensor], cache: ForwardCache, output_error: Tensor) -> list[Tensor]:
        return propagate_layerwise(
            weights,
            cache,
            output_error,
            lambda i, W, delta: non_dynamic_inversion(W, self.feedback(i), delta, self.alpha),
        )


class _SimulatedInversion(StabilizedFeedbackPropagator):
    """Shared options of the propagators that simulate controller dynamics."""

    options: ClassVar[tuple[str, ...]] = (
        *StabilizedFeedbackPropagator.options,
        "dt",
        "steps",
        "nonlinear_controller",
    )
    default_nonlinear_controller: ClassVar[bool] = False

    def __init__(
        self,
        layer_sizes: Sequence[int],
        *,
        dt: float = 0.5,
        steps: int = 1000,
        nonlinear_controller: bool | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(layer_sizes, **kwargs)  # type: ignore[arg-type]
        self.dt = check_dt(dt)
        self.steps = check_steps(steps)
        self.nonlinear_controller = (
            self.default_nonlinear_controller if nonlinear_controller is None else bool(nonlinear_controller)
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dt={self.dt}, steps={self.steps}, nonlinear_controller={self.nonlinear_controller}"


class DI(_SimulatedInversion):
    """Sequential dynamic inversion (Fig. 2a): one layer pair at a time, output first.

    Linearized by default (Eq. 17: the linear controller of Eqs. 5 and 8, then ``◦ g'(a_{l-1})``);
    ``nonlinear_controller=True`` uses Eq. 14 with ``g_{l-1}`` inside the dynamics instead.

    Args:
        dt: Euler step (0.5 in the paper).
        steps: Euler updates per layer (1000 in the paper).
        nonlinear_controller: use the controller of Eq. 14 instead of the linearized one.
        expanding_controller: for layers with ``d_l > d_{l-1}``, use the controller of Eqs. S1-S2,
            which is stable at ``α = 0``.
        method: ``"auto"``, ``"closed_form"`` or ``"euler"``, as in
            :func:`~dilightning.inversion.dynamic_inversion`.
        Other arguments as for :class:`StabilizedFeedbackPropagator`.
    """

    name: ClassVar[str] = "DI"
    options: ClassVar[tuple[str, ...]] = (*_SimulatedInversion.options, "expanding_controller", "method")

    def __init__(
        self,
        layer_sizes: Sequence[int],
        *,
        expanding_controller: bool = False,
        method: str = "auto",
        **kwargs: object,
    ) -> None:
        super().__init__(layer_sizes, **kwargs)
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; valid choices are {list(METHODS)}")
        self.expanding_controller = bool(expanding_controller)
        self.method = method

    def layer_controller(self, index: int) -> str:
        if self.expanding_controller and self.layer_sizes[index + 1] > self.layer_sizes[index]:
            return "expanding"
        return "standard"

    def hidden_errors(self, weights: Sequence[Tensor], cache: ForwardCache, output_error: Tensor) -> list[Tensor]:
        def invert(index: int, weight: Tensor, delta: Tensor) -> Tensor:
            nonlinearity = cache.nonlinearities[index - 1] if self.nonlinear_controller else None
            return dynamic_inversion(
                weight,
                self.feedback(index),
                delta,
                self.alpha,
                dt=self.dt,
                steps=self.steps,
                nonlinearity=nonlinearity,
                controller=self.layer_controller(index),
                method=self.method,
            )

        return propagate_layerwise(
            weights, cache, output_error, invert, multiply_derivative=not self.nonlinear_controller
        )


class RepeatDI(_SimulatedInversion):
    """Repeat-layer dynamic inversion (Fig. 2b, Algorithm 3): every layer pair's controller at once.

    Its steady state equals sequential DI's, but one simulated backward pass serves all layers.
    Linearized by default; ``nonlinear_controller=True`` uses Eq. 14 in every pair.
    """

    name: ClassVar[str] = "RepeatDI"

    def hidden_errors(self, weights: Sequence[Tensor], cache: ForwardCache, output_error: Tensor) -> list[Tensor]:
        if self.num_layers < 2:
            return []
        feedbacks = [self.feedback(index) for index in range(1, self.num_layers)]
        if self.nonlinear_controller:
            return repeat_layer_inversion(
                weights[1:],
                feedbacks,
                output_error,
                self.alpha,
                nonlinearities=cache.nonlinearities[:-1],
                dt=self.dt,
                steps=self.steps,
            )
        return repeat_layer_inversion(
            weights[1:], feedbacks, output_error, self.alpha, derivatives=cache.derivatives, dt=self.dt, steps=self.steps
        )
