"""Element-wise nonlinearities with their derivatives and, where they exist, their inverses.

The backward pass needs three things of each transfer function ``g``: ``g`` itself (the nonlinear
controller of Podlaski & Machens 2020, Eq. 14), its derivative ``g'`` (Eq. 3 and the linearized
controller of Eq. 17) and an inverse ``g^{-1}`` for the explicit inversion of Eq. 16.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Nonlinearity:
    """Transfer function ``g`` with ``g'`` and, where defined, ``g^{-1}``.

    ``derivative`` takes the pre-activation ``a`` and returns ``g'(a)``. ``inverse`` is ``None``
    for functions without a usable inverse (ReLU).
    """

    name: str
    function: Callable[[Tensor], Tensor]
    derivative: Callable[[Tensor], Tensor]
    inverse: Callable[[Tensor], Tensor] | None

    def __call__(self, x: Tensor) -> Tensor:
        return self.function(x)


def _identity(x: Tensor) -> Tensor:
    return x


def _ones(x: Tensor) -> Tensor:
    return torch.ones_like(x)


def _tanh_derivative(x: Tensor) -> Tensor:
    return 1.0 - torch.tanh(x) ** 2


def _tanh_inverse(y: Tensor) -> Tensor:
    # atanh is only defined on (-1, 1); the controller can leave that range, so clamp just inside it.
    limit = 1.0 - torch.finfo(y.dtype).eps
    return torch.atanh(y.clamp(-limit, limit))


def _relu_derivative(x: Tensor) -> Tensor:
    return (x > 0).to(x.dtype)


def _sigmoid_derivative(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1.0 - s)


def _sigmoid_inverse(y: Tensor) -> Tensor:
    eps = torch.finfo(y.dtype).eps
    return torch.logit(y, eps=eps)


NONLINEARITIES: dict[str, Nonlinearity] = {
    "linear": Nonlinearity("linear", _identity, _ones, _identity),
    "tanh": Nonlinearity("tanh", torch.tanh, _tanh_derivative, _tanh_inverse),
    "relu": Nonlinearity("relu", torch.relu, _relu_derivative, None),
    "sigmoid": Nonlinearity("sigmoid", torch.sigmoid, _sigmoid_derivative, _sigmoid_inverse),
}


def get_nonlinearity(name: str | Nonlinearity, *, argument: str = "nonlinearity") -> Nonlinearity:
    """Return the registered :class:`Nonlinearity` called ``name`` (case-insensitive).

    Raises ``ValueError`` naming the valid choices when ``name`` is unknown.
    """
    if isinstance(name, Nonlinearity):
        return name
    key = str(name).lower()
    if key not in NONLINEARITIES:
        raise ValueError(f"unknown {argument} {name!r}; valid choices are {sorted(NONLINEARITIES)}")
    return NONLINEARITIES[key]
