"""The ``<figure>_summary.json`` file written next to every figure."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch


def write_summary(
    output_dir: Path, figure: str, *, scale: str, seed: int, started: float, runs: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """Write ``<output_dir>/<figure>_summary.json`` and return its content.

    ``started`` is the ``time.perf_counter()`` value when the figure's work began; ``runs`` holds
    the per-variant results and ``extra`` any further top-level fields.
    """
    summary = {
        "figure": figure,
        "scale": scale,
        **extra,
        "seed": seed,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
        "runs": runs,
    }
    (output_dir / f"{figure}_summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary
