"""Supplementary Fig. 5 of Podlaski & Machens 2020: accuracy of DI against the leak α.

For layers of 20 × 20 (equal), 20 → 10 (contracting) and 10 → 20 (expanding) units, with linear,
tanh and ReLU controllers (Eq. 14), random uniform ``W`` and ``B`` with ``B`` then optimized by SSA
descent, and errors ``δ_l ~ N(0, I)``, DI runs 1000 Euler steps of ``dt = 0.5``. Two accuracies:

- the angle between the readout ``δ̃_l = W g(δ_{l-1})`` and the target ``δ_l`` (Eq. 15 at α = 0);
- the angle between ``δ_{l-1}`` and the explicit inversion ``g^{-1}(M^DI δ_l)`` with ``M^DI`` of
  Eq. 17, which is the NDI steady state (not for ReLU, which has no inverse).

NOTE: for tanh the explicit inversion needs ``|M^DI δ_l| < 1`` in every entry, which errors drawn from
``N(0, I)`` rarely satisfy; ``atanh`` is then evaluated at ±(1 − ε), so the tanh angles of the second
row measure mostly that limit. The paper does not give the scale of its ``W`` and ``B``.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from dilightning.angles import vector_angle
from dilightning.inversion import (
    FeedbackStabilizationError,
    dynamic_inversion,
    get_nonlinearity,
    non_dynamic_inversion,
    optimize_feedback_ssa,
)
from dilightning.reproduce.summary import write_summary
from dilightning.reproduce.style import clean_axes

logger = logging.getLogger(__name__)

# (d_{l-1}, d_l) of each panel column.
SHAPES = {"equal (20 → 20)": (20, 20), "contracting (20 → 10)": (20, 10), "expanding (10 → 20)": (10, 20)}
NONLINEARITIES = ("linear", "tanh", "relu")
COLORS = {"linear": "#1f78b4", "tanh": "#e31a1c", "relu": "#33a02c"}
SCALES = {
    "paper": {"leaks": (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0), "matrices": 10, "errors": 10},
    "smoke": {"leaks": (1e-3, 1e-1), "matrices": 2, "errors": 3},
}
# Entries of W and B are drawn from U(-r, r). The paper does not give r; with r = 0.5 the loop gains
# are large enough for accurate inversion at small leaks, while r = 1 makes many Euler runs at
# dt = 0.5 diverge.
WEIGHT_SCALE = 0.5
STEPS, DT = 1000, 0.5
ANGLE_FLOOR = 1e-4  # degrees; smaller angles are drawn at this value


def _draw_system(d_prev: int, d_l: int, alpha: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Draw ``W`` and ``B`` and stabilize ``B`` by SSA; ``None`` if this draw cannot be stabilized."""
    W = (2 * torch.rand(d_l, d_prev, generator=generator, dtype=torch.float64) - 1) * WEIGHT_SCALE
    B = (2 * torch.rand(d_prev, d_l, generator=generator, dtype=torch.float64) - 1) * WEIGHT_SCALE
    target = -0.5 * alpha if d_l > d_prev else -0.01
    try:
        B = optimize_feedback_ssa(W, B, alpha, target=target)
    except FeedbackStabilizationError as error:
        logger.info("skipping a %d -> %d draw at alpha=%g: %s", d_prev, d_l, alpha, error)
        return None
    return W, B


def measure(scale: str, seed: int) -> dict[str, Any]:
    """Return the angles of every shape, nonlinearity and leak: ``{shape: {g: {"readout": …, "inverse": …}}}``.

    Each entry is an array of shape ``(leaks, matrices × errors)`` in degrees (NaN where a draw could
    not be stabilized or the dynamics diverged).
    """
    settings = SCALES[scale]
    leaks = settings["leaks"]
    results: dict[str, Any] = {"leaks": list(leaks)}
    for shape_name, (d_prev, d_l) in SHAPES.items():
        generator = torch.Generator().manual_seed(seed)
        per_g = {g: {"readout": [], "inverse": []} for g in NONLINEARITIES}
        for alpha in leaks:
            rows = {g: {"readout": [], "inverse": []} for g in NONLINEARITIES}
            for _ in range(settings["matrices"]):
                system = None if (alpha == 0.0 and d_l > d_prev) else _draw_system(d_prev, d_l, alpha, generator)
                delta = torch.randn(settings["errors"], d_l, generator=generator, dtype=torch.float64)
                for g_name in NONLINEARITIES:
                    readout, inverse = _angles(system, delta, alpha, g_name)
                    rows[g_name]["readout"].extend(readout)
                    rows[g_name]["inverse"].extend(inverse)
            for g_name in NONLINEARITIES:
                per_g[g_name]["readout"].append(rows[g_name]["readout"])
                per_g[g_name]["inverse"].append(rows[g_name]["inverse"])
        results[shape_name] = {
            g: {kind: np.asarray(values, dtype=np.float64) for kind, values in kinds.items()} for g, kinds in per_g.items()
        }
    return results


def _angles(system, delta: torch.Tensor, alpha: float, g_name: str) -> tuple[list[float], list[float]]:
    count = delta.shape[0]
    if system is None:
        return [math.nan] * count, [math.nan] * count
    W, B = system
    g = get_nonlinearity(g_name)
    state = dynamic_inversion(W, B, delta, alpha, dt=DT, steps=STEPS, nonlinearity=g)
    readout = vector_angle(g(state) @ W.T, delta)
    if g.inverse is None or g_name == "relu":
        inverse = torch.full((count,), math.nan, dtype=torch.float64)
    else:
        inverse = vector_angle(state, g.inverse(non_dynamic_inversion(W, B, delta, alpha)))
    return readout.tolist(), inverse.tolist()


def draw(results: dict[str, Any], path_stem: Path, subtitle: str) -> None:
    """Draw the 2 × 3 panels (readout and inversion accuracy per shape) into PNG and PDF."""
    leaks = np.asarray(results["leaks"])
    positions = np.where(leaks > 0, leaks, leaks[leaks > 0].min() / 10 if (leaks > 0).any() else 1e-5)
    figure, axes = plt.subplots(2, 3, figsize=(13, 7), constrained_layout=True, sharex=True)
    for column, shape_name in enumerate(SHAPES):
        for row, kind in enumerate(("readout", "inverse")):
            axis = axes[row, column]
            clean_axes(axis)
            for g_name in NONLINEARITIES:
                if kind == "inverse" and g_name == "relu":
                    continue
                values = results[shape_name][g_name][kind]
                median = np.array([np.nanmedian(v) if np.isfinite(v).any() else np.nan for v in values])
                low = np.array([np.nanpercentile(v, 25) if np.isfinite(v).any() else np.nan for v in values])
                high = np.array([np.nanpercentile(v, 75) if np.isfinite(v).any() else np.nan for v in values])
                # Angles below the floor (exact inversions) are drawn on it, so the log axis can show them.
                axis.plot(positions, np.maximum(median, ANGLE_FLOOR), marker="o", color=COLORS[g_name], label=g_name)
                axis.fill_between(
                    positions, np.maximum(low, ANGLE_FLOOR), np.maximum(high, ANGLE_FLOOR), color=COLORS[g_name], alpha=0.2
                )
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.set_ylim(ANGLE_FLOOR / 2, 200)
            if row == 0:
                axis.set_title(shape_name, fontsize=10)
                axis.set_ylabel("δ̃_l ∠ δ_l (°)")
            else:
                axis.set_ylabel("δ_{l-1} ∠ g⁻¹(M^DI δ_l) (°)")
                axis.set_xlabel("leak α (leftmost point: α = 0)")
    axes[0, 0].legend(frameon=False, fontsize=8)
    figure.suptitle(f"Accuracy of dynamic inversion (Podlaski & Machens 2020, Suppl. Fig. 5) — {subtitle}", fontsize=11)
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path_stem.with_suffix(".png"), dpi=130)
    figure.savefig(path_stem.with_suffix(".pdf"))
    plt.close(figure)


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Return the median angles per shape, nonlinearity and leak."""
    summary: dict[str, Any] = {}
    for shape_name in SHAPES:
        summary[shape_name] = {}
        for g_name in NONLINEARITIES:
            summary[shape_name][g_name] = {}
            for kind in ("readout", "inverse"):
                medians = []
                for values in results[shape_name][g_name][kind]:
                    medians.append(float(np.nanmedian(values)) if np.isfinite(values).any() else None)
                summary[shape_name][g_name][f"median_{kind}_angle"] = dict(zip(map(str, results["leaks"]), medians))
    return summary


def reproduce(*, scale: str, output_dir: Path, seed: int) -> dict[str, Any]:
    """Measure DI accuracy and write ``figS5.png``, ``figS5.pdf``, ``figS5_summary.json`` and ``figS5_data.npz``."""
    if scale not in SCALES:
        raise ValueError(f"figS5 has no {scale!r} scale; valid choices are {sorted(SCALES)}")
    start = time.perf_counter()
    results = measure(scale, seed)
    settings = SCALES[scale]
    subtitle = f"{scale} scale: {settings['matrices']} matrices × {settings['errors']} errors per point, seed {seed}"
    draw(results, output_dir / "figS5", subtitle)
    arrays = {
        f"{shape}/{g}/{kind}": values
        for shape in SHAPES
        for g, kinds in results[shape].items()
        for kind, values in kinds.items()
    }
    np.savez_compressed(output_dir / "figS5_data.npz", leaks=np.asarray(results["leaks"]), **arrays)
    summary = write_summary(
        output_dir, "figS5", scale=scale, seed=seed, started=start, runs=summarize(results)
    )
    return summary


__all__ = ["draw", "measure", "reproduce", "summarize"]
