"""The ``ErrorPropagator`` interface and the layer-by-layer recursion it shares.

A propagator turns the output error ``δ_L`` into the error ``δ_l = ∂L/∂a_l`` (or its surrogate) of
every layer; the model then applies ``ΔW_l ∝ −δ_l h_{l-1}ᵀ`` (Podlaski & Machens 2020, Eq. 2).
Layer-wise rules follow Eq. 3, ``δ_{l-1} = M_l δ_l ◦ g'(a_{l-1})``, with ``M_l`` chosen per rule.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from dilightning.inversion.nonlinearities import Nonlinearity


@dataclass
class ForwardCache:
    """Quantities of one forward pass that error propagation needs, batch first.

    ``inputs[i]`` is ``h_i`` (the input of weight ``i``, shape ``(N, d_i)``), ``pre_activations[i]`` is
    ``a_{i+1} = W_{i+1} h_i + b_{i+1}`` and ``nonlinearities[i]`` is ``g_{i+1}``, for the ``L`` layers.
    """

    inputs: list[Tensor]
    pre_activations: list[Tensor]
    nonlinearities: list[Nonlinearity]
    _derivatives: list[Tensor] | None = field(default=None, repr=False)

    @property
    def derivatives(self) -> list[Tensor]:
        """``[g'(a_1), …, g'(a_{L-1})]`` of the hidden layers, each ``(N, d_l)``."""
        if self._derivatives is None:
            self._derivatives = [
                g.derivative(a) for g, a in zip(self.nonlinearities[:-1], self.pre_activations[:-1])
            ]
        return self._derivatives


def clip_norm(delta: Tensor, max_norm: float) -> Tensor:
    """Scale each row of ``delta`` (``(N, d)``) down to Euclidean norm ``max_norm`` where it exceeds it."""
    norms = torch.linalg.vector_norm(delta, dim=-1, keepdim=True)
    return delta * torch.clamp(max_norm / norms.clamp_min(torch.finfo(delta.dtype).tiny), max=1.0)


LayerRule = Callable[[int, Tensor, Tensor], Tensor]


def propagate_layerwise(
    weights: Sequence[Tensor],
    cache: ForwardCache,
    output_error: Tensor,
    rule: LayerRule,
    *,
    multiply_derivative: bool = True,
) -> list[Tensor]:
    """Return the hidden errors ``[δ_1, …, δ_{L-1}]`` by recursing ``δ_{i} = rule(i, W_{i+1}, δ_{i+1})``.

    Implements Eq. 3 of Podlaski & Machens 2020 with ``M_l`` supplied by ``rule`` (called with the
    0-based index ``i`` of ``W_{i+1}`` in ``weights``, the weight and the error above it). With
    ``multiply_derivative`` the result is multiplied by ``g'(a_i)``, as in Eq. 3 and Eq. 17.
    """
    deltas = [output_error]
    for index in range(len(weights) - 1, 0, -1):
        propagated = rule(index, weights[index], deltas[0])
        if multiply_derivative:
            propagated = propagated * cache.derivatives[index - 1]
        deltas.insert(0, propagated)
    return deltas[:-1]


class ErrorPropagator(nn.Module, ABC):
    """Strategy that computes every layer's error from the output error.

    Subclasses implement :meth:`hidden_errors`. Feedback matrices, where a rule has them, are
    registered buffers, so they move with the module and are saved in checkpoints.

    Args:
        layer_sizes: ``[d_0, d_1, …, d_L]``.
        max_delta_norm: if given, each hidden error vector is scaled down to this Euclidean norm
            after propagation (Podlaski & Machens 2020, Section 7.7.1, used 10 for linear and 1 for
            nonlinear regression). The output error is never clipped.
    """

    name: ClassVar[str] = ""
    options: ClassVar[tuple[str, ...]] = ("max_delta_norm",)

    def __init__(self, layer_sizes: Sequence[int], *, max_delta_norm: float | None = None) -> None:
        super().__init__()
        sizes = [int(size) for size in layer_sizes]
        if len(sizes) < 2 or any(size < 1 for size in sizes):
            raise ValueError(f"layer_sizes must list at least two positive sizes [d_0, …, d_L], got {list(layer_sizes)}")
        if max_delta_norm is not None and not max_delta_norm > 0:
            raise ValueError(f"max_delta_norm must be > 0 or None, got {max_delta_norm}")
        self.layer_sizes = sizes
        self.max_delta_norm = max_delta_norm

    @property
    def num_layers(self) -> int:
        """Number of weight layers ``L``."""
        return len(self.layer_sizes) - 1

    def reset_feedback(self, weights: Sequence[Tensor], generator: torch.Generator | None = None) -> None:
        """Initialize feedback matrices from the initial forward ``weights`` (no-op without feedback)."""

    @abstractmethod
    def hidden_errors(self, weights: Sequence[Tensor], cache: ForwardCache, output_error: Tensor) -> list[Tensor]:
        """Return ``[δ_1, …, δ_{L-1}]``, each ``(N, d_l)``, before clipping."""

    def forward(self, weights: Sequence[Tensor], cache: ForwardCache, output_error: Tensor) -> list[Tensor]:
        """Return every layer's error ``[δ_1, …, δ_L]`` with ``δ_L = output_error``.

        Args:
            weights: ``[W_1, …, W_L]``, ``W_l`` of shape ``(d_l, d_{l-1})``.
            cache: the forward pass that produced the output.
            output_error: ``δ_L = ∂ℓ/∂a_L`` per sample, ``(N, d_L)``.
        """
        if len(weights) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} weight matrices, got {len(weights)}")
        with torch.no_grad():
            hidden = self.hidden_errors(weights, cache, output_error.detach())
            if self.max_delta_norm is not None:
                hidden = [clip_norm(delta, self.max_delta_norm) for delta in hidden]
        return [*hidden, output_error.detach()]

    def extra_repr(self) -> str:
        return f"layer_sizes={self.layer_sizes}, max_delta_norm={self.max_delta_norm}"
