"""Dynamic inversion through several layers at once: single-loop and repeat-layer DI.

Both architectures of Podlaski & Machens 2020, Section 4.1 and Fig. 2b-c, propagate the output
error ``δ_L`` to every hidden layer in one simulated backward pass. Layers are numbered as in the
paper: ``weights = [W_2, …, W_L]`` are the forward matrices from the first hidden layer to the
output (``W_j`` is ``(d_j, d_{j-1})``), and the functions return ``[δ_1, …, δ_{L-1}]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from dilightning.inversion._validation import (
    check_alpha,
    check_chain,
    check_delta,
    check_dt,
    check_layer_pair,
    check_matrix,
    check_steps,
    flatten_batch,
)
from dilightning.inversion import native
from dilightning.inversion.nonlinearities import Nonlinearity, get_nonlinearity


def _nonlinearity_list(
    nonlinearities: str | Nonlinearity | Sequence[str | Nonlinearity], count: int
) -> list[Nonlinearity]:
    """Return one nonlinearity per hidden layer from a single name or a list of ``count`` names."""
    if isinstance(nonlinearities, (str, Nonlinearity)):
        return [get_nonlinearity(nonlinearities, argument="nonlinearities")] * count
    names = list(nonlinearities)
    if len(names) != count:
        raise ValueError(
            f"nonlinearities has {len(names)} entries but there are {count} hidden layers; "
            f"pass one nonlinearity per hidden layer or a single name for all"
        )
    return [get_nonlinearity(name, argument="nonlinearities") for name in names]


def _derivative_list(derivatives: Sequence[Tensor], weights: Sequence[Tensor], flat_size: int) -> list[Tensor]:
    """Check one derivative tensor per hidden layer and return them flattened to ``(N, d_j)``."""
    if len(derivatives) != len(weights):
        raise ValueError(
            f"derivatives has {len(derivatives)} entries but there are {len(weights)} hidden layers; "
            "pass g'(a_j) for every hidden layer j = 1 … L-1"
        )
    flattened = []
    for index, (derivative, weight) in enumerate(zip(derivatives, weights)):
        check_delta(derivative, weight.shape[1], name=f"derivatives[{index}]", reference=f"weights[{index}].shape[1]")
        flat = derivative.reshape(-1, derivative.shape[-1])
        if flat.shape[0] not in (1, flat_size):
            raise ValueError(
                f"derivatives[{index}] has {flat.shape[0]} rows but delta has {flat_size}; "
                "pass one derivative vector per error or a single one for all"
            )
        flattened.append(flat)
    return flattened


def _alpha_list(alpha: float | Sequence[float], count: int) -> list[float]:
    """Return one leak per layer pair from a single leak or a list of ``count`` leaks."""
    if isinstance(alpha, (int, float)) or (isinstance(alpha, Tensor) and alpha.ndim == 0):
        return [check_alpha(alpha)] * count
    values = list(alpha)
    if len(values) != count:
        raise ValueError(f"alpha has {len(values)} entries but there are {count} layer pairs; pass one leak per pair")
    return [check_alpha(value, name=f"alpha[{index}]") for index, value in enumerate(values)]


def single_loop_inversion(
    weights: Sequence[Tensor],
    B: Tensor,
    delta: Tensor,
    alpha: float,
    *,
    nonlinearities: str | Nonlinearity | Sequence[str | Nonlinearity],
    dt: float = 0.5,
    steps: int = 1000,
    derivatives: Sequence[Tensor] | None = None,
) -> list[Tensor]:
    """Propagate the output error to every hidden layer through one feedback loop (SLDI).

    Generalizes Algorithm 4 and Eqs. S3-S5 of Podlaski & Machens 2020 to any depth: the output
    controller ``u`` feeds back through ``B`` to the first hidden layer only, and the forward
    weights carry the signal up again::

        dδ_1/dt = −δ_1 + B u
        dδ_j/dt = −δ_j + W_j g_{j-1}(δ_{j-1})        (j = 2 … L-1)
        du/dt   = −α u + W_L g_{L-1}(δ_{L-1}) − δ_L

    integrated with explicit Euler from zero, updating ``δ_1, …, δ_{L-1}, u`` in that order, each
    with the values just written (in compiled C on the CPU when available, see
    :mod:`dilightning.inversion.native`). With ``derivatives`` the linearized form of Eqs. S12-S14 is used
    instead: ``g_j(δ_j)`` becomes ``δ_j ⊘ g'(a_j)`` (element-wise division), so the returned errors
    already include the factor ``g'(a_j)`` and the nonlinearities are not used.

    Args:
        weights: ``[W_2, …, W_L]``, ``W_j`` of shape ``(d_j, d_{j-1})``.
        B: loop feedback from the output to the first hidden layer, ``(d_1, d_L)``.
        delta: output errors, ``(..., d_L)``.
        alpha: leak ``α ≥ 0`` of the output controller.
        nonlinearities: ``g_1 … g_{L-1}`` of the hidden layers (one name for all, or a list).
        dt: Euler step.
        steps: number of Euler updates.
        derivatives: optional ``[g'(a_1), …, g'(a_{L-1})]``, each ``(..., d_j)`` (or one row shared by
            the batch), selecting the linearized controller. Every entry must be non-zero.

    Returns:
        ``[δ_1, …, δ_{L-1}]``, each of shape ``(..., d_j)``.
    """
    check_chain(weights)
    d_first, d_out = weights[0].shape[1], weights[-1].shape[0]
    check_matrix("B", B)
    if tuple(B.shape) != (d_first, d_out):
        raise ValueError(
            f"B has shape {tuple(B.shape)} but must be (d_1, d_L) = {(d_first, d_out)}: it feeds the output "
            "controller back to the first hidden layer"
        )
    check_delta(delta, d_out, reference="weights[-1].shape[0]")
    alpha = check_alpha(alpha)
    dt = check_dt(dt)
    steps = check_steps(steps)
    flat, leading = flatten_batch(delta)

    slopes: list[Tensor] | None = None
    names = ["linear"] * len(weights)
    if derivatives is not None:
        slopes = _derivative_list(derivatives, weights, flat.shape[0])
        for index, slope in enumerate(slopes):
            if bool((slope == 0).any()):
                raise ValueError(
                    f"derivatives[{index}] contains zeros; the linearized single-loop controller divides by g'(a), "
                    "so use the nonlinear controller (derivatives=None) for ReLU-like units"
                )
        readouts: list[Callable[[Tensor], Tensor]] = [lambda x, s=slope: x / s for slope in slopes]
    else:
        resolved = _nonlinearity_list(nonlinearities, len(weights))
        names = [g.name for g in resolved]
        readouts = list(resolved)

    shapes = [tuple(weight.shape) for weight in weights] + [tuple(B.shape)]
    if native.available(B, flat, *weights, *(slopes or [])) and native.faster_than_torch(flat.shape[0], shapes):
        states = native.single_loop_euler(weights, B, flat, alpha, dt, steps, names, slopes)
        return [state.reshape(*leading, state.shape[-1]) for state in states]

    states = [flat.new_zeros(flat.shape[0], weight.shape[1]) for weight in weights]
    control = flat.new_zeros(flat.shape)
    weights_t = [weight.transpose(0, 1) for weight in weights]
    feedback_t = B.transpose(0, 1)
    scaled_target = dt * flat
    leak = 1.0 - dt * alpha

    for _ in range(steps):
        states[0] = torch.addmm(states[0], control, feedback_t, beta=1.0 - dt, alpha=dt)
        for j in range(1, len(states)):
            states[j] = torch.addmm(states[j], readouts[j - 1](states[j - 1]), weights_t[j - 1], beta=1.0 - dt, alpha=dt)
        control = torch.addmm(control, readouts[-1](states[-1]), weights_t[-1], beta=leak, alpha=dt) - scaled_target

    return [state.reshape(*leading, state.shape[-1]) for state in states]


def repeat_layer_inversion(
    weights: Sequence[Tensor],
    feedbacks: Sequence[Tensor],
    delta: Tensor,
    alpha: float | Sequence[float],
    *,
    nonlinearities: str | Nonlinearity | Sequence[str | Nonlinearity] | None = None,
    derivatives: Sequence[Tensor] | None = None,
    dt: float = 0.5,
    steps: int = 1000,
) -> list[Tensor]:
    """Propagate the output error to every hidden layer with all controllers running at once.

    Generalizes Algorithm 3 of Podlaski & Machens 2020 (repeat-layer DI, Fig. 2b) to any depth. Each
    layer pair ``l`` has its own feedback ``B_l`` and controller ``u_l``; the controller of pair
    ``l`` tracks the current, still settling error of layer ``l`` instead of waiting for it::

        dδ_{l-1}/dt = −δ_{l-1} + B_l u_l
        du_l/dt     = −α_l u_l + W_l r_{l-1}(δ_{l-1}) − t_l

    with target ``t_L = δ_L`` and ``t_l`` the current error of layer ``l`` below the output.
    Each Euler step updates the pairs from the output down, as in Algorithm 3. Three forms:

    - ``derivatives`` given: the linearized controller (Algorithm 2), ``r = identity`` and
      ``t_l = δ_l ◦ g'(a_l)``; the returned errors are ``δ_j ◦ g'(a_j)``.
    - ``nonlinearities`` given: the nonlinear controller (Algorithm 1), ``r_j = g_j`` and
      ``t_l = δ_l``.
    - neither: a linear network.

    The steady state equals sequential DI's (Eq. 17 applied layer by layer).

    Args:
        weights: ``[W_2, …, W_L]``, ``W_j`` of shape ``(d_j, d_{j-1})``.
        feedbacks: ``[B_2, …, B_L]``, ``B_j`` of shape ``(d_{j-1}, d_j)``.
        delta: output errors, ``(..., d_L)``.
        alpha: one leak for all pairs or ``[α_2, …, α_L]``.
        nonlinearities: ``g_1 … g_{L-1}`` for the nonlinear controller.
        derivatives: ``[g'(a_1), …, g'(a_{L-1})]`` for the linearized controller.
        dt: Euler step.
        steps: number of Euler updates.

    Returns:
        ``[δ_1, …, δ_{L-1}]``, each of shape ``(..., d_j)``.
    """
    check_chain(weights)
    if len(feedbacks) != len(weights):
        raise ValueError(f"feedbacks has {len(feedbacks)} entries but weights has {len(weights)}; pass one B per W")
    for index, (weight, feedback) in enumerate(zip(weights, feedbacks)):
        check_layer_pair(weight, feedback, weight_name=f"weights[{index}]", feedback_name=f"feedbacks[{index}]")
    check_delta(delta, weights[-1].shape[0], reference="weights[-1].shape[0]")
    leaks = _alpha_list(alpha, len(weights))
    dt = check_dt(dt)
    steps = check_steps(steps)
    if nonlinearities is not None and derivatives is not None:
        raise ValueError("pass either nonlinearities (nonlinear controller) or derivatives (linearized), not both")
    flat, leading = flatten_batch(delta)

    identity: Callable[[Tensor], Tensor] = lambda x: x  # noqa: E731
    readouts: list[Callable[[Tensor], Tensor]] = [identity] * len(weights)
    emit: list[Callable[[Tensor], Tensor]] = [identity] * len(weights)
    if nonlinearities is not None:
        readouts = list(_nonlinearity_list(nonlinearities, len(weights)))
    if derivatives is not None:
        slopes = _derivative_list(derivatives, weights, flat.shape[0])
        emit = [lambda x, s=slope: x * s for slope in slopes]

    states = [flat.new_zeros(flat.shape[0], weight.shape[1]) for weight in weights]
    controls = [flat.new_zeros(flat.shape[0], weight.shape[0]) for weight in weights]
    weights_t = [weight.transpose(0, 1) for weight in weights]
    feedbacks_t = [feedback.transpose(0, 1) for feedback in feedbacks]

    for _ in range(steps):
        for i in reversed(range(len(weights))):
            states[i] = torch.addmm(states[i], controls[i], feedbacks_t[i], beta=1.0 - dt, alpha=dt)
            target = flat if i == len(weights) - 1 else emit[i + 1](states[i + 1])
            controls[i] = torch.addmm(
                controls[i], readouts[i](states[i]), weights_t[i], beta=1.0 - dt * leaks[i], alpha=dt
            ) - dt * target

    return [emit[i](states[i]).reshape(*leading, states[i].shape[-1]) for i in range(len(weights))]
