"""Pluggable error-propagation strategies: BP, FA, PBP, NDI, DI, RepeatDI and SLDI.

Every strategy is an :class:`ErrorPropagator` (a ``torch.nn.Module`` whose feedback matrices are
buffers) that maps the output error to every layer's error. :func:`build_propagator` creates one by
name from a flat set of options, as configs and the command line provide them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from dilightning.propagators.base import ErrorPropagator, ForwardCache, clip_norm, propagate_layerwise
from dilightning.propagators.feedback import FEEDBACK_INITS, FeedbackPropagator, StabilizedFeedbackPropagator
from dilightning.propagators.gradient_rules import BP, FA, PBP
from dilightning.propagators.inversion_rules import DI, NDI, RepeatDI
from dilightning.propagators.single_loop import SLDI

logger = logging.getLogger(__name__)

PROPAGATORS: dict[str, type[ErrorPropagator]] = {
    cls.name: cls for cls in (BP, FA, PBP, NDI, DI, RepeatDI, SLDI)
}


def build_propagator(name: str, layer_sizes: Sequence[int], options: Mapping[str, Any] | None = None) -> ErrorPropagator:
    """Create the propagator called ``name`` for a network with ``layer_sizes``.

    Options that the chosen rule does not use (for example ``alpha`` for BP) are dropped with a
    warning when they are set, that is not ``None``; unknown option names raise ``ValueError``.

    Args:
        name: one of ``PROPAGATORS`` (``"BP"``, ``"FA"``, ``"PBP"``, ``"NDI"``, ``"DI"``,
            ``"RepeatDI"``, ``"SLDI"``).
        layer_sizes: ``[d_0, …, d_L]``.
        options: keyword arguments for the propagator; ``None`` values mean "class default".
    """
    if name not in PROPAGATORS:
        raise ValueError(f"unknown propagator {name!r}; valid choices are {list(PROPAGATORS)}")
    cls = PROPAGATORS[name]
    known = {option for propagator in PROPAGATORS.values() for option in propagator.options}
    chosen: dict[str, Any] = {}
    for key, value in (options or {}).items():
        if key not in known:
            raise ValueError(f"unknown propagator option {key!r}; valid options are {sorted(known)}")
        if value is None:
            continue
        if key in cls.options:
            chosen[key] = value
        else:
            logger.warning("propagator %s does not use option %s=%r; it is ignored", name, key, value)
    return cls(layer_sizes, **chosen)


__all__ = [
    "BP",
    "DI",
    "FA",
    "FEEDBACK_INITS",
    "NDI",
    "PBP",
    "PROPAGATORS",
    "SLDI",
    "ErrorPropagator",
    "FeedbackPropagator",
    "ForwardCache",
    "RepeatDI",
    "StabilizedFeedbackPropagator",
    "build_propagator",
    "clip_norm",
    "propagate_layerwise",
]
