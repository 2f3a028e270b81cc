"""Argument checks shared by the inversion functions.

Every check raises ``ValueError`` with the argument's name, the bad value and the fix, so that a
wrong call fails at the boundary instead of deep inside a matrix product.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def check_matrix(name: str, matrix: Tensor) -> None:
    """Raise unless ``matrix`` is a 2-D floating-point tensor."""
    if not isinstance(matrix, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(matrix).__name__}")
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {tuple(matrix.shape)}")
    if not matrix.is_floating_point():
        raise ValueError(f"{name} must have a floating-point dtype, got {matrix.dtype}; convert it with .float()")


def check_layer_pair(weight: Tensor, feedback: Tensor, *, weight_name: str = "W", feedback_name: str = "B") -> None:
    """Raise unless ``weight`` is ``(d_l, d_{l-1})`` and ``feedback`` is ``(d_{l-1}, d_l)``."""
    check_matrix(weight_name, weight)
    check_matrix(feedback_name, feedback)
    d_l, d_prev = weight.shape
    if tuple(feedback.shape) != (d_prev, d_l):
        raise ValueError(
            f"{feedback_name} has shape {tuple(feedback.shape)} but {weight_name} has shape {(d_l, d_prev)}; "
            f"{feedback_name} must be (d_{{l-1}}, d_l) = {(d_prev, d_l)}, for example {feedback_name} = -{weight_name}.T"
        )
    check_same_dtype_device((weight_name, weight), (feedback_name, feedback))


def check_delta(delta: Tensor, size: int, *, name: str = "delta", reference: str = "W.shape[0]") -> None:
    """Raise unless ``delta`` is a floating tensor whose last dimension equals ``size``."""
    if not isinstance(delta, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(delta).__name__}")
    if delta.ndim == 0 or delta.shape[-1] != size:
        raise ValueError(
            f"{name} has shape {tuple(delta.shape)} but its last dimension must equal {reference} = {size}; "
            f"pass errors of shape (..., {size})"
        )
    if not delta.is_floating_point():
        raise ValueError(f"{name} must have a floating-point dtype, got {delta.dtype}")


def check_same_dtype_device(*named: tuple[str, Tensor]) -> None:
    """Raise unless all named tensors share one dtype and one device."""
    first_name, first = named[0]
    for name, tensor in named[1:]:
        if tensor.dtype != first.dtype:
            raise ValueError(f"{name} has dtype {tensor.dtype} but {first_name} has {first.dtype}; cast both to one dtype")
        if tensor.device != first.device:
            raise ValueError(
                f"{name} is on {tensor.device} but {first_name} is on {first.device}; move both to one device"
            )


def check_alpha(alpha: float, *, name: str = "alpha") -> float:
    """Return ``alpha`` as a float after checking that the leak is finite and non-negative."""
    value = float(alpha)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} (controller leak) must be a finite number >= 0, got {alpha}; use 0 for no leak")
    return value


def check_dt(dt: float) -> float:
    """Return ``dt`` as a float after checking that the Euler step is finite and positive."""
    value = float(dt)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"dt (Euler time step) must be a finite number > 0, got {dt}; the paper uses dt=0.5")
    return value


def check_steps(steps: int) -> int:
    """Return ``steps`` after checking that it is an integer of at least 1."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps (number of Euler updates) must be an integer >= 1, got {steps!r}; the paper uses 1000")
    return steps


def check_chain(weights: Sequence[Tensor], *, name: str = "weights") -> None:
    """Raise unless ``weights`` is a non-empty sequence of matrices whose shapes chain.

    Consecutive matrices must satisfy ``weights[j].shape[0] == weights[j + 1].shape[1]``.
    """
    if isinstance(weights, Tensor) or len(weights) == 0:
        raise ValueError(f"{name} must be a non-empty list of weight matrices, got {type(weights).__name__}")
    for index, weight in enumerate(weights):
        check_matrix(f"{name}[{index}]", weight)
    for index in range(len(weights) - 1):
        rows = weights[index].shape[0]
        columns = weights[index + 1].shape[1]
        if rows != columns:
            raise ValueError(
                f"{name}[{index}] has shape {tuple(weights[index].shape)} and {name}[{index + 1}] has shape "
                f"{tuple(weights[index + 1].shape)}; the output size {rows} must equal the next input size {columns}"
            )
    check_same_dtype_device(*((f"{name}[{i}]", w) for i, w in enumerate(weights)))


def as_float(value: float | Tensor) -> float:
    """Return a Python float from a number or a one-element tensor."""
    if isinstance(value, Tensor):
        return float(value.detach().cpu())
    return float(value)


def flatten_batch(delta: Tensor) -> tuple[Tensor, torch.Size]:
    """Return ``delta`` reshaped to ``(N, d)`` and the leading shape needed to undo it."""
    leading = delta.shape[:-1]
    return delta.reshape(-1, delta.shape[-1]), leading
