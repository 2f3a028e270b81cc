"""Dynamic inversion (DI) of one layer: the leaky integral controller of Podlaski & Machens 2020.

The backward pass of layer ``l`` runs a controller ``u`` (size ``d_l``) that drives the error state
``δ_{l-1}`` (size ``d_{l-1}``) until its forward transformation reproduces the target ``δ_l``:

- standard controller, Eqs. 5 and 8 (Eq. 14 with a nonlinearity ``g``)::

      dδ_{l-1}/dt = −δ_{l-1} + B u
      du/dt       = −α u + W g(δ_{l-1}) − δ_l

- expanding-layer controller, Eqs. S1-S2, stable for ``d_l > d_{l-1}`` at ``α = 0``::

      dδ_{l-1}/dt = −α δ_{l-1} + B (δ̃_l − δ_l)
      dδ̃_l/dt     = −δ̃_l + W g(δ_{l-1})

  The paper writes the feedback term both as ``B(δ_l − δ̃_l)`` and as ``B e_l`` with
  ``e_l = δ̃_l − δ_l``; this module uses the second, so that its linear stability is governed by
  ``B W − α I`` as the paper states, ``B = −Wᵀ`` (Tr-Init) is stable, and the steady state
  ``(B W − α I)^{-1} B δ_l`` equals Algorithm 5's NDI for expanding layers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dilightning.inversion._validation import (
    check_alpha,
    check_delta,
    check_dt,
    check_layer_pair,
    check_same_dtype_device,
    check_steps,
    flatten_batch,
)
from dilightning.inversion import native
from dilightning.inversion.closed_form import dynamic_inversion_operator
from dilightning.inversion.nonlinearities import Nonlinearity, get_nonlinearity

CONTROLLERS = ("standard", "expanding")
METHODS = ("auto", "closed_form", "euler")


def check_controller(controller: str) -> str:
    """Return ``controller`` after checking that it names a supported controller."""
    if controller not in CONTROLLERS:
        raise ValueError(f"unknown controller {controller!r}; valid choices are {list(CONTROLLERS)}")
    return controller


def _resolve_nonlinearity(nonlinearity: str | Nonlinearity | None) -> Nonlinearity | None:
    """Return the controller's nonlinearity, or ``None`` for a linear controller."""
    if nonlinearity is None:
        return None
    resolved = get_nonlinearity(nonlinearity)
    return None if resolved.name == "linear" else resolved


def _euler_standard(
    W: Tensor, B: Tensor, delta: Tensor, alpha: float, dt: float, steps: int, g: Nonlinearity | None
) -> Tensor:
    """Integrate Eqs. 5 and 8/14 with explicit Euler (Algorithms 1-2); ``delta`` is ``(N, d_l)``."""
    state = delta.new_zeros(delta.shape[0], W.shape[1])
    control = delta.new_zeros(delta.shape)
    feedback_t, weight_t = B.transpose(0, 1), W.transpose(0, 1)
    scaled_target = dt * delta
    leak = 1.0 - dt * alpha

    for _ in range(steps):
        # δ_{l-1} += dt (−δ_{l-1} + B u)
        state = torch.addmm(state, control, feedback_t, beta=1.0 - dt, alpha=dt)
        readout = state if g is None else g(state)
        # u += dt (−α u + W g(δ_{l-1}) − δ_l), using the δ_{l-1} just updated
        control = torch.addmm(control, readout, weight_t, beta=leak, alpha=dt) - scaled_target
    return state


def _euler_expanding(
    W: Tensor, B: Tensor, delta: Tensor, alpha: float, dt: float, steps: int, g: Nonlinearity | None
) -> Tensor:
    """Integrate Eqs. S1-S2 with explicit Euler in the order of Algorithms 1-2; ``delta`` is ``(N, d_l)``."""
    state = delta.new_zeros(delta.shape[0], W.shape[1])
    readout = delta.new_zeros(delta.shape)
    feedback_t, weight_t = B.transpose(0, 1), W.transpose(0, 1)

    for _ in range(steps):
        # δ_{l-1} += dt (−α δ_{l-1} + B (δ̃_l − δ_l))
        state = torch.addmm(state, readout - delta, feedback_t, beta=1.0 - dt * alpha, alpha=dt)
        activity = state if g is None else g(state)
        # δ̃_l += dt (−δ̃_l + W g(δ_{l-1}))
        readout = torch.addmm(readout, activity, weight_t, beta=1.0 - dt, alpha=dt)
    return state


def dynamic_inversion(
    W: Tensor,
    B: Tensor,
    delta: Tensor,
    alpha: float,
    *,
    dt: float = 0.5,
    steps: int = 1000,
    nonlinearity: str | Nonlinearity | None = None,
    controller: str = "standard",
    method: str = "auto",
) -> Tensor:
    """Propagate errors through one layer by dynamic inversion (DI).

    Integrates the controller dynamics of Podlaski & Machens 2020 (Eqs. 5 and 8, or Eq. 14 when
    ``nonlinearity`` is given; Eqs. S1-S2 with ``controller="expanding"``) from a zero state with
    ``steps`` explicit Euler updates in the order of Algorithms 1-2: first
    ``δ_{l-1} += dt(−δ_{l-1} + B u)``, then ``u += dt(−α u + W g(δ_{l-1}) − δ_l)`` with the new
    ``δ_{l-1}``. The result approaches Eq. 10 (linear) or Eq. 16 (nonlinear) as the dynamics settle.

    Args:
        W: forward weights, ``(d_l, d_{l-1})``.
        B: feedback weights, ``(d_{l-1}, d_l)``.
        delta: errors of layer ``l``, ``(..., d_l)``; every leading index is an independent error.
        alpha: controller leak ``α ≥ 0``.
        dt: Euler step (the paper uses 0.5).
        steps: number of Euler updates (the paper uses 1000).
        nonlinearity: ``g`` of layer ``l-1`` for the nonlinear controller (a name such as
            ``"tanh"`` or a :class:`Nonlinearity`); ``None`` or ``"linear"`` for the linear one.
        controller: ``"standard"`` (Eqs. 5, 8, 14) or ``"expanding"`` (Eqs. S1-S2).
        method: ``"closed_form"`` computes the exact final state of the linear recurrence without
            stepping (:func:`dynamic_inversion_operator`); ``"euler"`` steps through the loop, in
            compiled C on the CPU when a C compiler is available and the layer is small enough for C
            to be faster (:mod:`dilightning.inversion.native`), in PyTorch otherwise; ``"auto"`` picks ``"closed_form"`` for linear and ``"euler"``
            for nonlinear controllers.

    Returns:
        ``δ_{l-1}`` after ``steps`` updates, ``(..., d_{l-1})``, before any multiplication by
        ``g'(a_{l-1})``.
    """
    check_layer_pair(W, B)
    check_delta(delta, W.shape[0])
    check_same_dtype_device(("W", W), ("delta", delta))
    alpha = check_alpha(alpha)
    dt = check_dt(dt)
    steps = check_steps(steps)
    check_controller(controller)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid choices are {list(METHODS)}")
    g = _resolve_nonlinearity(nonlinearity)
    if method == "closed_form" and g is not None:
        raise ValueError(
            f"method='closed_form' needs a linear controller but nonlinearity={g.name!r}; "
            "use method='euler' or method='auto' for the nonlinear controller"
        )

    flat, leading = flatten_batch(delta)
    if method == "euler" or g is not None:
        if native.available(W, B, flat) and native.faster_than_torch(flat.shape[0], [tuple(W.shape)]):
            name = "linear" if g is None else g.name
            result = native.dynamic_inversion_euler(W, B, flat, alpha, dt, steps, name, controller)
        else:
            integrate = _euler_standard if controller == "standard" else _euler_expanding
            result = integrate(W, B, flat, alpha, dt, steps, g)
    else:
        result = dynamic_inversion_operator(W, B, alpha, dt=dt, steps=steps, controller=controller)(flat)
    return result.reshape(*leading, W.shape[1])
