"""The ``<figure>_summary.json`` file written next to every figure."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def write_summary(
    output_dir: Path,
    figure: str,
    *,
    scale: str,
    seed: int,
    started: float,
    runs: dict[str, Any],
    results: Sequence[Any] = (),
    **extra: Any,
) -> dict[str, Any]:
    """Write ``<output_dir>/<figure>_summary.json`` and return its content.

    ``started`` is the ``time.perf_counter()`` value when the figure's work began; ``runs`` holds
    the per-variant results and ``extra`` any further top-level fields. From the run ``results``
    it records how many runs were loaded from the cache and the training time of all runs, since
    ``wall_seconds`` only covers this call.
    """
    summary = {
        "figure": figure,
        "scale": scale,
        **extra,
        "seed": seed,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "runs_loaded_from_cache": sum(bool(getattr(result, "cached", False)) for result in results),
        "training_seconds_all_runs": round(sum(getattr(result, "seconds", 0.0) for result in results), 1),
        "torch": torch.__version__,
        "runs": runs,
    }
    (output_dir / f"{figure}_summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary
