"""Shared plotting style: one color per leak and feedback, one line style per rule."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

# Colors follow Podlaski & Machens 2020, Table 1: blue α = 0, yellow α = 1e-3, red α = 1e-2.
BASE_COLORS = {"BP": "#000000", "PBP": "#6a3d9a"}
NAMED_COLORS = {"blue": "#1f78b4", "yellow": "#d8a106", "red": "#e31a1c"}
RULE_STYLES = {"NDI": "-", "DI": (0, (4, 2)), "RepeatDI": (0, (4, 2)), "SLDI": ":"}


def variant_style(model: dict[str, Any], color: str | None = None) -> dict[str, Any]:
    """Return matplotlib line options for a variant given its model options and Table 1 color name."""
    rule = model.get("propagator", "BP")
    if rule in BASE_COLORS:
        return {"color": BASE_COLORS[rule], "linestyle": "-", "linewidth": 1.4}
    if rule == "FA":
        scaled = model.get("feedback_init") == "scaled_tr"
        return {"color": "#bdbdbd" if scaled else "#737373", "linestyle": "-." if scaled else "-", "linewidth": 1.2}
    if color is not None and color not in NAMED_COLORS:
        raise ValueError(f"unknown color {color!r}; valid choices are {sorted(NAMED_COLORS)}")
    return {"color": NAMED_COLORS[color or "blue"], "linestyle": RULE_STYLES.get(rule, "-"), "linewidth": 1.3}


def clean_axes(axis: plt.Axes) -> None:
    """Hide the top and right spines, as in the paper's figures."""
    axis.spines["top"].set_visible(False)
    axis.spines["right"].set_visible(False)
