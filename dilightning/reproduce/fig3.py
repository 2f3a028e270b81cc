"""Fig. 3 of Podlaski & Machens 2020: linear and nonlinear regression with every rule (panels a-k)."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from dilightning.reproduce.experiment import build_specs, slugify
from dilightning.reproduce.runner import RunResult, run_specs
from dilightning.reproduce.summary import write_summary
from dilightning.reproduce.style import clean_axes, variant_style

logger = logging.getLogger(__name__)

EXPERIMENTS = ("linear_regression", "nonlinear_regression")
ERROR_SERIES = "train_set/sse"
# Keep at most this many points per series in the figure's data file, so it stays small enough to commit.
MAX_SAVED_POINTS = 2500


def _key(result: RunResult) -> str:
    return f"{result.spec.experiment}/{result.spec.update_mode}"


def normalized_errors(results: list[RunResult]) -> dict[str, np.ndarray]:
    """Return each run's training-set error divided by the maximum over all given runs and updates."""
    errors = {r.spec.label: r.series[ERROR_SERIES][1] for r in results if ERROR_SERIES in r.series}
    finite = [values[np.isfinite(values)] for values in errors.values()]
    peak = max((values.max() for values in finite if values.size), default=1.0)
    return {label: values / peak for label, values in errors.items()}


def _plot_error(axis: plt.Axes, results: list[RunResult], title: str) -> None:
    normalized = normalized_errors(results)
    for result in results:
        if result.spec.label in normalized:
            steps = result.series[ERROR_SERIES][0]
            axis.plot(steps, normalized[result.spec.label], label=result.spec.label, **variant_style(result.spec.model, result.spec.color))
    axis.set_yscale("log")
    axis.set_xlabel("examples")
    axis.set_ylabel("NMSE")
    axis.set_title(title, fontsize=9)


def rolling_median(values: np.ndarray, window: int) -> np.ndarray:
    """Return the centred running median of ``values`` over ``window`` points (NaNs ignored)."""
    if window <= 1 or len(values) < window:
        return values
    padded = np.pad(values, (window // 2, window - 1 - window // 2), mode="edge")
    return np.nanmedian(np.lib.stride_tricks.sliding_window_view(padded, window), axis=-1)


def _plot_series(
    axis: plt.Axes,
    results: list[RunResult],
    rules: tuple[str, ...],
    series_styles: dict[str, Any],
    ylabel: str,
    title: str,
    *,
    kind: str = "angle",
) -> None:
    """Plot the named series of every run whose rule is in ``rules``.

    ``kind="angle"`` draws the per-update values faintly under their running median, because
    single-example angles fluctuate strongly; ``kind="eigenvalue"`` plots ``−λmax`` on a log axis
    turned upside down, so that more stable is lower, as in the paper.
    """
    for result in results:
        if result.spec.model["propagator"] not in rules:
            continue
        style = variant_style(result.spec.model, result.spec.color)
        for series, linestyle in series_styles.items():
            if series not in result.series:
                continue
            steps, values = result.series[series]
            options = {**style, "linestyle": linestyle if linestyle is not None else style["linestyle"]}
            if kind == "eigenvalue":
                axis.plot(steps, -values, **options)
            else:
                axis.plot(steps, values, **{**options, "linestyle": "-", "linewidth": 0.4, "alpha": 0.2})
                axis.plot(steps, rolling_median(values, max(1, len(values) // 100)), **options)
    if kind == "eigenvalue":
        axis.set_yscale("log")
        axis.invert_yaxis()
        axis.yaxis.set_major_formatter(plt.FuncFormatter(lambda value, _: f"−{value:.0e}"))
    axis.set_xlabel("examples")
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=9)


def draw(results: list[RunResult], path_stem: Path, subtitle: str) -> None:
    """Draw panels a-k into ``<path_stem>.png`` and ``.pdf``."""
    groups: dict[str, list[RunResult]] = {}
    for result in results:
        groups.setdefault(_key(result), []).append(result)
    linear, linear_norm = groups.get("linear_regression/fixed_lr", []), groups.get("linear_regression/fixed_norm", [])
    nonlinear = groups.get("nonlinear_regression/fixed_lr", [])

    figure, axes = plt.subplots(2, 6, figsize=(22, 7.5), constrained_layout=True)
    for axis in axes.flat:
        clean_axes(axis)
    solid = {"lambda_max/layer_2": None}
    _plot_error(axes[0, 0], linear, "a  linear regression")
    _plot_error(axes[0, 1], linear_norm, "b  fixed-norm updates")
    _plot_series(axes[0, 2], linear, ("DI",), solid, "λmax", "c  stability of DI", kind="eigenvalue")
    _plot_series(axes[0, 3], linear, ("DI",), {"ndi_angle/layer_1": None}, "δ_DI ∠ δ_NDI (°)", "d  DI vs NDI")
    _plot_series(axes[0, 4], linear, ("DI", "NDI"), {"feedback_angle/layer_2": None}, "B ∠ −Wᵀ (°)", "e  feedback alignment")
    _plot_series(axes[0, 5], linear, ("DI",), {"pbp_angle/layer_1": None}, "δ_DI ∠ δ_PBP (°)", "f  DI vs PBP")

    two_layers = {"lambda_max/layer_2": "-", "lambda_max/layer_3": "--"}
    _plot_error(axes[1, 0], nonlinear, "g  nonlinear regression")
    _plot_series(axes[1, 1], nonlinear, ("DI",), two_layers, "λmax", "h  stability of DI", kind="eigenvalue")
    hidden = {"ndi_angle/layer_1": "-", "ndi_angle/layer_2": "--"}
    _plot_series(axes[1, 2], nonlinear, ("DI",), hidden, "δ_DI ∠ δ_NDI (°)", "i  DI vs NDI")
    feedback = {"feedback_angle/layer_2": "-", "feedback_angle/layer_3": "--"}
    _plot_series(axes[1, 3], nonlinear, ("DI",), feedback, "B ∠ −Wᵀ (°)", "j  feedback alignment")
    _plot_series(axes[1, 4], nonlinear, ("SLDI",), hidden, "δ_SLDI ∠ δ_NDI (°)", "k  SLDI vs NDI")

    legend_axis = axes[1, 5]
    legend_axis.axis("off")
    handles, labels = axes[1, 0].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[0, 0].get_legend_handles_labels()
    legend_axis.legend(handles, labels, loc="center", fontsize=8, frameon=False, title="variant")
    notes = "h-k: solid = first layer, dashed = second layer\nangles: running median over 1% of training"
    legend_axis.text(0.5, 0.0, notes, ha="center", fontsize=8, transform=legend_axis.transAxes)
    figure.suptitle(f"Dynamic inversion on regression tasks (Podlaski & Machens 2020, Fig. 3) — {subtitle}", fontsize=11)
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path_stem.with_suffix(".png"), dpi=130)
    figure.savefig(path_stem.with_suffix(".pdf"))
    plt.close(figure)


def _tail_mean(values: np.ndarray, fraction: float = 0.1) -> float:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan
    return float(finite[-max(1, int(len(finite) * fraction)) :].mean())


def summarize(results: list[RunResult]) -> dict[str, Any]:
    """Return per-variant final NMSE, maximum λmax, median angles and where the feedback angle settles."""
    summary: dict[str, Any] = {}
    groups: dict[str, list[RunResult]] = {}
    for result in results:
        groups.setdefault(_key(result), []).append(result)
    for key, members in groups.items():
        normalized = normalized_errors(members)
        entries = {}
        for result in members:
            entry: dict[str, Any] = {"status": result.status, "seconds": round(result.seconds, 2)}
            if result.message:
                entry["message"] = result.message
            if result.spec.label in normalized:
                entry["final_nmse"] = float(normalized[result.spec.label][-1])
            lambdas = [values for name, (_, values) in result.series.items() if name.startswith("lambda_max/")]
            if lambdas:
                entry["max_lambda_max"] = float(np.nanmax(np.concatenate(lambdas)))
            restabilized = result.series.get("restabilizations")
            if restabilized is not None:
                entry["restabilizations"] = int(np.nanmax(restabilized[1]))
            angles = {name: values for name, (_, values) in result.series.items() if "angle" in name}
            if angles:
                entry["median_angles"] = {name: float(np.nanmedian(values)) for name, values in sorted(angles.items())}
                entry["settled_feedback_angle"] = {
                    name: _tail_mean(values) for name, values in sorted(angles.items()) if name.startswith("feedback_angle")
                }
            entries[result.spec.label] = entry
        summary[key] = entries
    return summary


def save_data(results: list[RunResult], path: Path) -> None:
    """Save every plotted series as ``<experiment>/<mode>/<variant>/<series>/{steps,values}`` in an NPZ file."""
    arrays = {}
    for result in results:
        prefix = f"{_key(result)}/{slugify(result.spec.label)}"
        for name, (steps, values) in result.series.items():
            stride = max(1, math.ceil(len(steps) / MAX_SAVED_POINTS))
            arrays[f"{prefix}/{name}/steps"] = steps[::stride]
            arrays[f"{prefix}/{name}/values"] = values[::stride].astype(np.float32)
    np.savez_compressed(path, **arrays)


def reproduce(*, scale: str, output_dir: Path, seed: int, workers: int | None, resume: bool = True) -> dict[str, Any]:
    """Train every Fig. 3 variant, then write ``fig3.png``, ``fig3.pdf``, ``fig3_summary.json`` and ``fig3_data.npz``.

    Every finished run is stored in ``<output_dir>/runs/cache``; with ``resume``, runs finished
    earlier with the same resolved config are loaded from there instead of trained again.
    """
    start = time.perf_counter()
    specs = [spec for name in EXPERIMENTS for spec in build_specs(name, scale=scale, seed=seed, output_dir=output_dir)]
    logger.info("fig3: %d runs at %s scale, seed %d", len(specs), scale, seed)
    cache_dir = output_dir / "runs" / "cache"
    results = run_specs(specs, workers=workers, description="fig3", cache_dir=cache_dir, load_cached=resume)

    subtitle = f"{scale} scale, seed {seed}"
    draw(results, output_dir / "fig3", subtitle)
    save_data(results, output_dir / "fig3_data.npz")
    summary = write_summary(
        output_dir, "fig3", scale=scale, seed=seed, started=start, runs=summarize(results), results=results
    )
    return summary
