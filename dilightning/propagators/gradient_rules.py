"""Backprop, feedback alignment and pseudobackprop: Eq. 3 with ``M_l`` from Eq. 4.

Podlaski & Machens 2020, Eq. 4: ``M_l = W_lᵀ`` (BP), ``B_l`` (FA) or ``W_l⁺`` (PBP), and
``δ_{l-1} = M_l δ_l ◦ g'(a_{l-1})`` (Eq. 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor

from dilightning.inversion import pseudo_inverse
from dilightning.propagators.base import ErrorPropagator, ForwardCache, propagate_layerwise
from dilightning.propagators.feedback import FeedbackPropagator


class BP(ErrorPropagator):
    """Backpropagation: ``δ_{l-1} = W_lᵀ δ_l ◦ g'(a_{l-1})``, the exact gradient of the loss."""

    name: ClassVar[str] = "BP"

    def hidden_errors(self, weights: Sequence[Tensor], cache: ForwardCache, output_error: Tensor) -> list[Tensor]:
        return propagate_layerwise(weights, cache, output_error, lambda i, W, delta: delta @ W)


class FA(FeedbackPropagator):
    """Feedback alignment: ``δ_{l-1} = B_l δ_l ◦ g'(a_{l-1})`` with fixed feedback ``B_l``.

    By default ``B_l ~ U(−0.5, 0.5)`` (Podlaski & Machens 2020, Section 7.7.2, after Lillicrap et al.
    2016); ``feedback_init="scaled_tr"`` with ``feedback_gain=50`` gives their ``B = −50 Wᵀ``.
    """

    name: ClassVar[str] = "FA"
    default_feedback_init: ClassVar[str] = "random"
    default_feedback_scale: ClassVar[float] = 0.5

    def hidden_errors(self, weights: Sequence[Tensor], cache: ForwardCache, output_error: Tensor) -> list[Tensor]:
        return propagate_layerwise(
            weights, cache, output_error, lambda i, W, delta: delta @ self.feedback(i).transpose(0, 1)
        )


class PBP(ErrorPropagator):
    """Pseudobackprop: ``δ_{l-1} = W_l⁺ δ_l ◦ g'(a_{l-1})`` with the current weights' pseudoinverse."""

    name: ClassVar[str] = "PBP"

    def hidden_errors(self, weights: Sequence[Tensor], cache: ForwardCache, output_error: Tensor) -> list[Tensor]:
        return propagate_layerwise(weights, cache, output_error, lambda i, W, delta: pseudo_inverse(W, delta))
