"""Command line: ``python -m dilightning.reproduce fig3 [--scale paper|smoke] [--out DIR] [--seed N]``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dilightning.reproduce import FIGURES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dilightning.reproduce",
        description="Regenerate a figure of Podlaski & Machens (2020) by training every variant with Lightning.",
    )
    parser.add_argument("target", choices=FIGURES, help="what to regenerate")
    parser.add_argument(
        "--scale",
        choices=("paper", "smoke"),
        default="paper",
        help="'paper' runs Table 1's sizes; 'smoke' shrinks every run to seconds (default: paper)",
    )
    parser.add_argument("--out", type=Path, default=Path("paper_figures"), help="output folder (default: paper_figures)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, initial weights and feedback (default: 0)")
    parser.add_argument(
        "--workers", type=int, default=None, help="parallel training processes (default: one per CPU core)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.workers is not None and args.workers < 1:
        print(f"error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)

    from dilightning.reproduce import fig3

    summary = fig3.reproduce(scale=args.scale, output_dir=args.out, seed=args.seed, workers=args.workers)
    failed = [
        f"{group}: {label}"
        for group, entries in summary["runs"].items()
        for label, entry in entries.items()
        if entry["status"] != "ok"
    ]
    print(f"fig3 finished in {summary['wall_seconds']:.0f} s ({args.scale} scale, seed {args.seed}).")
    if failed:
        print(f"{len(failed)} run(s) did not finish: {'; '.join(failed)}")
    print(f"Wrote {args.out / 'fig3.png'}, fig3.pdf, fig3_summary.json and fig3_data.npz.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
