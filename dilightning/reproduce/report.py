"""``reproduce all``: every figure and table, then ``REPORT.md`` that checks each claim of Podlaski & Machens (2020).

Each claim row gives the paper's statement, the value measured here and whether it holds. With
several seeds every figure is regenerated per seed (in ``seed<N>/`` subfolders) and each measured
value is reported as mean ± standard deviation over the seeds; the paper shows single runs.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dilightning.reproduce import fig3, fig4, figS5, table1

logger = logging.getLogger(__name__)

# The scale each figure runs at for a given `reproduce all --scale`.
FIGURE_SCALES = {
    "paper": {"fig3": "paper", "fig4": "paper", "figS5": "paper"},
    "quick": {"fig3": "paper", "fig4": "quick", "figS5": "paper"},
    "smoke": {"fig3": "smoke", "fig4": "smoke", "figS5": "smoke"},
}


@dataclass
class Claim:
    """One claim of Podlaski & Machens (2020) and how to measure it from the figures' summaries."""

    name: str
    source: str
    statement: str
    measure: Callable[[dict[str, Any]], float | None]
    holds: Callable[[float], bool]
    unit: str = ""
    needs: str = "fig3"


def _runs(summaries: dict[str, Any], figure: str, group: str) -> dict[str, Any]:
    return summaries.get(figure, {}).get("runs", {}).get(group, {})


def _values(entries: dict[str, Any], key: str, prefix: str = "") -> list[float]:
    return [entry[key] for label, entry in entries.items() if label.startswith(prefix) and entry.get(key) is not None]


def _max_lambda(summaries: dict[str, Any]) -> float | None:
    values = []
    for group in ("linear_regression/fixed_lr", "linear_regression/fixed_norm", "nonlinear_regression/fixed_lr"):
        values += _values(_runs(summaries, "fig3", group), "max_lambda_max")
    return max(values) if values else None


def _median_angle(group: str, prefix: str, angle: str) -> Callable[[dict[str, Any]], float | None]:
    def measure(summaries: dict[str, Any]) -> float | None:
        values = [
            entry["median_angles"][angle]
            for label, entry in _runs(summaries, "fig3", group).items()
            if label.startswith(prefix) and angle in entry.get("median_angles", {})
        ]
        return statistics.median(values) if values else None

    return measure


def _settled_feedback(summaries: dict[str, Any]) -> float | None:
    values = [
        entry["settled_feedback_angle"]["feedback_angle/layer_2"]
        for label, entry in _runs(summaries, "fig3", "linear_regression/fixed_lr").items()
        if label.startswith(("DI", "NDI")) and "settled_feedback_angle" in entry
    ]
    return statistics.mean(values) if values else None


def _inversion_vs_bp_fa(summaries: dict[str, Any]) -> float | None:
    """Return the worst final NMSE of an inversion rule divided by the best of BP and FA (≤ 1.1: as good)."""
    entries = _runs(summaries, "fig3", "nonlinear_regression/fixed_lr")
    baseline = [entry["final_nmse"] for label, entry in entries.items() if label.startswith(("BP", "FA")) and "final_nmse" in entry]
    inversion = [
        entry["final_nmse"]
        for label, entry in entries.items()
        if label.startswith(("PBP", "NDI", "DI", "SLDI")) and "final_nmse" in entry
    ]
    if not baseline or not inversion:
        return None
    return max(inversion) / min(baseline)


def _mnist_error(rule: str) -> Callable[[dict[str, Any]], float | None]:
    def measure(summaries: dict[str, Any]) -> float | None:
        values = [
            entry["final_test_error_percent"]
            for label, entry in _runs(summaries, "fig4", "mnist_classification").items()
            if label.split(" ")[0] == rule and "final_test_error_percent" in entry
        ]
        return statistics.mean(values) if values else None

    return measure


def _autoencoder_gain(label: str) -> Callable[[dict[str, Any]], float | None]:
    """Return a function measuring the relative drop of one autoencoder variant's training error."""

    def measure(summaries: dict[str, Any]) -> float | None:
        entry = _runs(summaries, "fig4", "mnist_autoencoder").get(label)
        if not entry or "final_training_error" not in entry:
            return None
        return 1.0 - entry["final_training_error"] / entry["initial_training_error"]

    return measure


def _autoencoder_di_vs_bp(summaries: dict[str, Any]) -> float | None:
    """Return how much more DI lowers the autoencoder error than BP, both from uniform weights."""
    di, bp = _autoencoder_gain("DI α=1e-3")(summaries), _autoencoder_gain("BP")(summaries)
    return None if di is None or bp is None else di - bp


def _figs5_trend(summaries: dict[str, Any]) -> float | None:
    """Return the fraction of (shape, nonlinearity) curves whose readout angle grows from the smallest to the largest leak."""
    runs = summaries.get("figS5", {}).get("runs", {})
    rising, total = 0, 0
    for per_g in runs.values():
        for kinds in per_g.values():
            medians = [value for value in kinds["median_readout_angle"].values() if value is not None]
            if len(medians) >= 2:
                total += 1
                rising += medians[-1] > medians[0]
    return rising / total if total else None


def _figs5_expanding_worst(summaries: dict[str, Any]) -> float | None:
    """Return the median readout angle of the expanding minus the contracting layer (tanh, α > 0)."""
    runs = summaries.get("figS5", {}).get("runs", {})
    try:
        expanding = runs["expanding (10 → 20)"]["tanh"]["median_readout_angle"]
        contracting = runs["contracting (20 → 10)"]["tanh"]["median_readout_angle"]
    except KeyError:
        return None
    pairs = [(expanding[key], contracting[key]) for key in expanding if float(key) > 0]
    pairs = [(e, c) for e, c in pairs if e is not None and c is not None]
    return statistics.median(e - c for e, c in pairs) if pairs else None


CLAIMS = [
    Claim("stability", "Section 5, Fig. 3c, h", "DI remained stable throughout training (λmax < 0).",
          _max_lambda, lambda value: value < 0, unit="max λmax"),
    Claim("di_ndi_linear", "Section 5.1, Fig. 3d", "Linear regression: DI updates are well aligned to NDI's.",
          _median_angle("linear_regression/fixed_lr", "DI", "ndi_angle/layer_1"), lambda value: value < 10.0,
          unit="median δ_DI∠δ_NDI (°)"),
    Claim("di_ndi_nonlinear", "Section 5.1, Fig. 3i", "Nonlinear regression: DI closely follows NDI.",
          _median_angle("nonlinear_regression/fixed_lr", "DI", "ndi_angle/layer_1"), lambda value: value < 10.0,
          unit="median δ_DI∠δ_NDI, first hidden layer (°)"),
    Claim("feedback_45", "Section 5.1, Fig. 3e", "Linear regression: B∠−Wᵀ settles around 45° for DI and NDI.",
          _settled_feedback, lambda value: 30.0 <= value <= 60.0, unit="mean settled B∠−Wᵀ (°)"),
    Claim("inversion_vs_bp", "Section 5.1, Fig. 3g",
          "Nonlinear regression: all inversion algorithms finish equal to or better than BP and FA.",
          _inversion_vs_bp_fa, lambda value: value <= 1.1, unit="worst inversion NMSE ÷ best BP/FA NMSE"),
    Claim("sldi_ndi", "Section 5.1, Fig. 3k", "SLDI∠NDI is small (about 45° or less).",
          _median_angle("nonlinear_regression/fixed_lr", "SLDI", "ndi_angle/layer_1"), lambda value: value <= 45.0,
          unit="median δ_SLDI∠δ_NDI (°)"),
    Claim("mnist_bp", "Section 5.2, Fig. 4a", "MNIST: BP reaches 2.2 % test error after 10 epochs.",
          _mnist_error("BP"), lambda value: abs(value - 2.2) <= 1.0, unit="test error (%)", needs="fig4"),
    Claim("mnist_fa", "Section 5.2, Fig. 4a", "MNIST: FA reaches 1.8 % test error after 10 epochs.",
          _mnist_error("FA"), lambda value: abs(value - 1.8) <= 1.0, unit="test error (%)", needs="fig4"),
    Claim("mnist_di", "Section 5.2, Fig. 4a", "MNIST: DI reaches about 2.8 % test error after 10 epochs.",
          _mnist_error("DI"), lambda value: abs(value - 2.8) <= 1.0, unit="test error (%)", needs="fig4"),
    Claim("mnist_ndi", "Section 5.2, Fig. 4a", "MNIST: NDI and PBP reach about 2.8 % test error after 10 epochs.",
          _mnist_error("NDI"), lambda value: abs(value - 2.8) <= 1.0, unit="test error (%)", needs="fig4"),
    Claim("autoencoder_bp_orthogonal", "Section 5.2, Fig. 4b", "Autoencoder: BP learns only from orthogonal weights.",
          lambda s: None if _autoencoder_gain("BP (orth.)")(s) is None or _autoencoder_gain("BP")(s) is None
          else _autoencoder_gain("BP (orth.)")(s) - _autoencoder_gain("BP")(s),
          lambda value: value > 0, unit="error drop, orthogonal − uniform", needs="fig4"),
    Claim("autoencoder_di_uniform", "Section 5.2, Fig. 4b",
          "Autoencoder: DI learns from uniform weights, where BP does not.",
          _autoencoder_di_vs_bp, lambda value: value > 0, unit="error drop, DI − BP (uniform)", needs="fig4"),
    Claim("figS5_leak", "Section 7.1, Suppl. Fig. 5", "DI accuracy degrades as the leak α grows.",
          _figs5_trend, lambda value: value >= 0.75, unit="fraction of curves rising with α", needs="figS5"),
    Claim("figS5_expanding", "Section 7.1, Suppl. Fig. 5", "DI is least accurate for expanding layers.",
          _figs5_expanding_worst, lambda value: value > 0, unit="expanding − contracting median angle (°)",
          needs="figS5"),
]


def _format(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def evaluate(per_seed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return one row per claim with the measured values over seeds and whether the claim holds."""
    rows = []
    for claim in CLAIMS:
        values = [value for summaries in per_seed if (value := claim.measure(summaries)) is not None]
        values = [value for value in values if not math.isnan(value)]
        if not values:
            rows.append({"claim": claim, "measured": "not measured", "holds": "—", "values": []})
            continue
        holds = claim.holds(statistics.mean(values))
        rows.append({"claim": claim, "measured": _format(values), "holds": "yes" if holds else "no", "values": values})
    return rows


def write_report(rows: list[dict[str, Any]], per_seed: list[dict[str, Any]], path: Path, *, scale: str, seeds: int) -> None:
    """Write ``REPORT.md`` with the claim table and the scale each figure ran at."""
    figure_scales = ", ".join(
        f"{figure}: {summary.get('scale_note') or summary.get('scale')}"
        for figure, summary in per_seed[0].items()
        if figure in ("fig3", "fig4", "figS5")
    )
    lines = [
        "# Reproduction report: Podlaski & Machens (2020)",
        "",
        f"Generated by `python -m dilightning.reproduce all --scale {scale} --seeds {seeds}`.",
        f"Scales run: {figure_scales}.",
        "Values are " + ("single runs (seed 0)." if seeds == 1 else f"mean ± standard deviation over {seeds} seeds."),
        "",
        "| claim | source | paper | measured | unit | holds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        claim = row["claim"]
        lines.append(
            f"| {claim.name} | {claim.source} | {claim.statement} | {row['measured']} | {claim.unit} | {row['holds']} |"
        )
    lines += [
        "",
        "The MNIST rows compare with errors after 10 epochs of 60 000 images; at the quick or smoke scale they",
        "are measured after less training and are not expected to match. Thresholds: angles below 10° count as",
        "well aligned, 30°-60° as about 45°, test errors within 1 percentage point of the paper's as equal,",
        "and an NMSE within 10 % of the best of BP and FA as equal.",
        "",
    ]
    path.write_text("\n".join(lines))


def reproduce_all(
    *,
    scale: str,
    output_dir: Path,
    seeds: int,
    workers: int | None,
    data_dir: str,
    download: bool,
    resume: bool = True,
) -> dict[str, Any]:
    """Regenerate every figure and table for ``seeds`` seeds and write ``REPORT.md``."""
    if scale not in FIGURE_SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid choices are {sorted(FIGURE_SCALES)}")
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    start = time.perf_counter()
    scales = FIGURE_SCALES[scale]
    mnist_available = (Path(data_dir) / "MNIST" / "raw").is_dir() or download
    per_seed = []
    for seed in range(seeds):
        folder = output_dir if seeds == 1 else output_dir / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        summaries: dict[str, Any] = {}
        logger.info("all: seed %d, writing to %s", seed, folder)
        summaries["fig3"] = fig3.reproduce(scale=scales["fig3"], output_dir=folder, seed=seed, workers=workers, resume=resume)
        if mnist_available:
            summaries["fig4"] = fig4.reproduce(
                scale=scales["fig4"], output_dir=folder, seed=seed, workers=workers, data_dir=data_dir,
                download=download, resume=resume,
            )
        else:
            logger.warning("MNIST not found in %s/MNIST/raw: fig4 skipped (pass --data-dir or --download)", data_dir)
        summaries["figS5"] = figS5.reproduce(scale=scales["figS5"], output_dir=folder, seed=seed)
        per_seed.append(summaries)
    table1.reproduce(output_dir=output_dir)

    rows = evaluate(per_seed)
    write_report(rows, per_seed, output_dir / "REPORT.md", scale=scale, seeds=seeds)
    claims = {row["claim"].name: {"measured": row["measured"], "holds": row["holds"], "values": row["values"]} for row in rows}
    summary = {"figure": "all", "scale": scale, "seeds": seeds, "wall_seconds": round(time.perf_counter() - start, 1),
               "claims": claims}
    (output_dir / "report_summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary
