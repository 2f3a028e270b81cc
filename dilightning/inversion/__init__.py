"""Error inversion for feedforward networks: pure tensor functions, no Lightning.

Implements the error-propagation rules of Podlaski & Machens 2020, "Biological Credit Assignment
through Dynamic Inversion of Feedforward Networks" (NeurIPS 2020):

- :func:`pseudo_inverse` — pseudobackprop, ``W⁺ δ`` (Eq. 4);
- :func:`non_dynamic_inversion` — the controller's steady state solved directly (Eq. 10, Algorithm 5);
- :func:`dynamic_inversion` — the controller simulated with Euler steps (Eqs. 5, 8, 14, S1-S2);
- :func:`dynamic_inversion_operator` and :func:`dynamic_inversion_matrix` — the exact map
  ``δ_l ↦ δ_{l-1}`` of the linear Euler recurrence;
- :func:`single_loop_inversion` and :func:`repeat_layer_inversion` — all hidden layers at once
  (Algorithms 3-4, Eqs. S3-S5, S12-S14);
- :func:`system_matrix`, :func:`max_real_eigenvalue` and :func:`optimize_feedback_ssa` — linear
  stability (Eq. S24) and its repair by smoothed-spectral-abscissa descent.

Weights are ``(d_l, d_{l-1})``, feedback ``(d_{l-1}, d_l)``, errors batched row vectors ``(..., d_l)``.
"""

from dilightning.inversion.chains import repeat_layer_inversion, single_loop_inversion
from dilightning.inversion.closed_form import (
    DynamicInversionOperator,
    dynamic_inversion_matrix,
    dynamic_inversion_operator,
)
from dilightning.inversion.dynamics import CONTROLLERS, METHODS, dynamic_inversion
from dilightning.inversion.explicit import non_dynamic_inversion, pseudo_inverse
from dilightning.inversion.nonlinearities import NONLINEARITIES, Nonlinearity, get_nonlinearity
from dilightning.inversion.stability import (
    FeedbackStabilizationError,
    max_real_eigenvalue,
    optimize_feedback_ssa,
    smoothed_spectral_abscissa,
    system_matrix,
)

__all__ = [
    "CONTROLLERS",
    "METHODS",
    "NONLINEARITIES",
    "DynamicInversionOperator",
    "FeedbackStabilizationError",
    "Nonlinearity",
    "dynamic_inversion",
    "dynamic_inversion_matrix",
    "dynamic_inversion_operator",
    "get_nonlinearity",
    "max_real_eigenvalue",
    "non_dynamic_inversion",
    "optimize_feedback_ssa",
    "pseudo_inverse",
    "repeat_layer_inversion",
    "single_loop_inversion",
    "smoothed_spectral_abscissa",
    "system_matrix",
]
