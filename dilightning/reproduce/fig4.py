"""Fig. 4 of Podlaski & Machens 2020: MNIST classification and the MNIST autoencoder (panels a-d)."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from dilightning.reproduce.experiment import RunSpec, build_specs, slugify
from dilightning.reproduce.runner import RunResult, run_specs
from dilightning.reproduce.summary import write_summary
from dilightning.reproduce.style import clean_axes, variant_style

logger = logging.getLogger(__name__)

EXPERIMENTS = ("mnist_classification", "mnist_autoencoder")
# Test errors after 10 epochs reported in Section 5.2 of the paper, in percent.
PAPER_TEST_ERRORS = {"BP": 2.2, "FA": 1.8, "PBP": 2.8, "NDI": 2.8, "DI": 2.8}
# The runs whose reconstructions and codes are shown: BP from orthogonal and DI from uniform weights.
SHOWCASE = ("BP (orth.)", "DI α=1e-3")


def _curve(result: RunResult, metric: str) -> tuple[np.ndarray, np.ndarray]:
    epochs = result.series["epoch"][1]
    values = result.series[metric][1]
    keep = np.isfinite(values)
    return epochs[keep], values[keep]


def _scale_note(specs: list[RunSpec], scale: str) -> str:
    notes = []
    for spec in (next(s for s in specs if s.experiment == name) for name in EXPERIMENTS if any(s.experiment == name for s in specs)):
        images = spec.data_args.get("train_subset") or 60000
        notes.append(f"{spec.experiment.replace('mnist_', '')}: {spec.trainer.get('max_epochs')} epoch(s) × {images} images")
    return f"{scale} scale — " + "; ".join(notes)


def _plot_digits(axis: plt.Axes, results: dict[str, RunResult]) -> None:
    rows = []
    names = []
    for label in SHOWCASE:
        result = results.get(label)
        if result is None or "outputs" not in result.artifacts:
            continue
        if not rows:
            rows.append(result.artifacts["inputs"][:8])
            names.append("input")
        rows.append(result.artifacts["outputs"][:8])
        names.append(label)
    axis.axis("off")
    axis.set_title("c  input and reconstructed digits", fontsize=9)
    if not rows:
        return
    grid = np.concatenate([np.concatenate([image.reshape(28, 28) for image in row], axis=1) for row in rows], axis=0)
    axis.imshow(np.clip(grid, 0.0, 1.0), cmap="gray_r", interpolation="nearest")
    for index, name in enumerate(names):
        axis.text(-4, 28 * index + 14, name, ha="right", va="center", fontsize=8)


def _tsne(codes: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = min(30.0, max(5.0, (len(codes) - 1) / 3.0))
    return TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity).fit_transform(codes)


def draw(results: list[RunResult], path_stem: Path, subtitle: str, seed: int) -> dict[str, Any]:
    """Draw panels a-d into ``<path_stem>.png`` and ``.pdf``; return the t-SNE embeddings drawn."""
    classification = [r for r in results if r.spec.experiment == "mnist_classification"]
    autoencoder = [r for r in results if r.spec.experiment == "mnist_autoencoder"]
    figure = plt.figure(figsize=(16, 8.5), constrained_layout=True)
    grid = figure.add_gridspec(2, 3)

    axis = figure.add_subplot(grid[0, 0])
    for result in classification:
        if "val/error" in result.series:
            epochs, errors = _curve(result, "val/error")
            axis.plot(epochs, 100 * errors, marker="o", markersize=2, label=result.spec.label, **variant_style(result.spec.model, result.spec.color))
    axis.set_yscale("log")
    axis.set_xlabel("epoch")
    axis.set_ylabel("test error (%)")
    axis.set_title("a  MNIST classification, 784-1000-10", fontsize=9)
    axis.legend(fontsize=7, frameon=False)
    clean_axes(axis)

    axis = figure.add_subplot(grid[0, 1])
    for result in autoencoder:
        if "val/loss" in result.series:
            epochs, losses = _curve(result, "val/loss")
            style = variant_style(result.spec.model, result.spec.color)
            if result.spec.weight_init == "orthogonal":
                style = {**style, "linestyle": (0, (1, 1.5))}
            axis.plot(epochs, losses, label=result.spec.label, **style)
    axis.set_yscale("log")
    axis.set_xlabel("epoch")
    axis.set_ylabel("training error (½‖y − x‖² per image)")
    axis.set_title("b  MNIST autoencoder (dotted: orthogonal init.)", fontsize=9)
    axis.legend(fontsize=6, frameon=False, ncol=2)
    clean_axes(axis)

    by_label = {r.spec.label: r for r in autoencoder}
    _plot_digits(figure.add_subplot(grid[0, 2]), by_label)

    embeddings = {}
    for column, label in enumerate(SHOWCASE):
        axis = figure.add_subplot(grid[1, column])
        axis.set_xticks([])
        axis.set_yticks([])
        result = by_label.get(label)
        if result is None or "codes" not in result.artifacts:
            axis.set_title(f"d  t-SNE of the code: {label} (missing)", fontsize=9)
            continue
        embedding = _tsne(result.artifacts["codes"].astype(np.float64), seed)
        embeddings[label] = embedding
        axis.scatter(embedding[:, 0], embedding[:, 1], c=result.artifacts["labels"], cmap="tab10", s=3)
        axis.set_title(f"d  t-SNE of the 30-d code: {label}", fontsize=9)
    if embeddings:
        legend_axis = figure.add_subplot(grid[1, 2])
        legend_axis.axis("off")
        handles = [plt.Line2D([], [], marker="o", linestyle="", color=plt.cm.tab10(d / 9), label=str(d)) for d in range(10)]
        legend_axis.legend(handles=handles, title="digit", loc="center left", frameon=False, ncol=2)

    figure.suptitle(f"Dynamic inversion on MNIST (Podlaski & Machens 2020, Fig. 4) — {subtitle}", fontsize=11)
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path_stem.with_suffix(".png"), dpi=120)
    figure.savefig(path_stem.with_suffix(".pdf"))
    plt.close(figure)
    return embeddings


def summarize(results: list[RunResult]) -> dict[str, Any]:
    """Return the final test error (classification) and training error (autoencoder) of every variant."""
    summary: dict[str, Any] = {"mnist_classification": {}, "mnist_autoencoder": {}}
    for result in results:
        entry: dict[str, Any] = {"status": result.status, "seconds": round(result.seconds, 1)}
        if result.message:
            entry["message"] = result.message
        if result.spec.experiment == "mnist_classification" and "val/error" in result.series:
            epochs, errors = _curve(result, "val/error")
            entry["final_test_error_percent"] = float(100 * errors[-1]) if errors.size else math.nan
            entry["epochs"] = float(epochs[-1]) if epochs.size else 0.0
            rule = result.spec.model["propagator"]
            if rule in PAPER_TEST_ERRORS:
                entry["paper_test_error_percent"] = PAPER_TEST_ERRORS[rule]
        if result.spec.experiment == "mnist_autoencoder" and "val/loss" in result.series:
            epochs, losses = _curve(result, "val/loss")
            entry["initial_training_error"] = float(losses[0]) if losses.size else math.nan
            entry["final_training_error"] = float(losses[-1]) if losses.size else math.nan
            entry["epochs"] = float(epochs[-1]) if epochs.size else 0.0
        summary[result.spec.experiment][result.spec.label] = entry
    return summary


def save_data(results: list[RunResult], embeddings: dict[str, np.ndarray], path: Path) -> None:
    """Save curves, example digits, codes and t-SNE embeddings in one NPZ file."""
    arrays: dict[str, np.ndarray] = {}
    for result in results:
        prefix = f"{result.spec.experiment}/{slugify(result.spec.label)}"
        for name, (steps, values) in result.series.items():
            arrays[f"{prefix}/{name}/steps"] = steps
            arrays[f"{prefix}/{name}/values"] = values
        for name, value in result.artifacts.items():
            arrays[f"{prefix}/artifacts/{name}"] = value
    for label, embedding in embeddings.items():
        arrays[f"mnist_autoencoder/{slugify(label)}/tsne"] = embedding
    np.savez_compressed(path, **arrays)


def reproduce(
    *,
    scale: str,
    output_dir: Path,
    seed: int,
    workers: int | None,
    data_dir: str,
    download: bool = False,
    resume: bool = True,
) -> dict[str, Any]:
    """Train every Fig. 4 variant, then write ``fig4.png``, ``fig4.pdf``, ``fig4_summary.json`` and ``fig4_data.npz``.

    Every finished run is stored in ``<output_dir>/runs/cache``; with ``resume``, runs finished
    earlier with the same resolved config are loaded from there instead of trained again.
    """
    start = time.perf_counter()
    overrides = {"data_dir": data_dir, "download": download}
    specs = [
        spec
        for name in EXPERIMENTS
        for spec in build_specs(name, scale=scale, seed=seed, output_dir=output_dir, data_overrides=overrides)
    ]
    if download:
        from dilightning.data import MNISTDataModule

        MNISTDataModule(data_dir=data_dir, download=True).prepare_data()
    # Missing files would otherwise fail every run separately and leave an empty figure behind.
    from dilightning.data.mnist import load_images

    for dataset in sorted({str(spec.data_args.get("dataset", "mnist")) for spec in specs}):
        load_images(data_dir, dataset, train=False, download=False)
    logger.info("fig4: %d runs at %s scale, seed %d", len(specs), scale, seed)
    cache_dir = output_dir / "runs" / "cache"
    results = run_specs(specs, workers=workers, description="fig4", cache_dir=cache_dir, load_cached=resume)

    subtitle = _scale_note(specs, scale)
    embeddings = draw(results, output_dir / "fig4", subtitle, seed)
    save_data(results, embeddings, output_dir / "fig4_data.npz")
    summary = write_summary(
        output_dir,
        "fig4",
        scale=scale,
        seed=seed,
        started=start,
        scale_note=subtitle,
        runs=summarize(results),
        results=results,
    )
    return summary
