"""Command line: ``python -m dilightning.reproduce {fig3,fig4} [--scale …] [--out DIR] [--seed N]``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dilightning.reproduce import FIGURES

SCALES = {"fig3": ("paper", "smoke"), "fig4": ("paper", "quick", "smoke")}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dilightning.reproduce",
        description="Regenerate a figure of Podlaski & Machens (2020) by training every variant with Lightning.",
    )
    parser.add_argument("target", choices=FIGURES, help="what to regenerate")
    parser.add_argument(
        "--scale",
        choices=("paper", "quick", "smoke"),
        default="paper",
        help="'paper' runs Table 1's sizes; 'quick' (fig4 only) a subset that shows the ordering in about "
        "15 minutes; 'smoke' shrinks every run to seconds (default: paper)",
    )
    parser.add_argument("--out", type=Path, default=Path("paper_figures"), help="output folder (default: paper_figures)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data order, initial weights and feedback (default: 0)")
    parser.add_argument("--workers", type=int, default=None, help="parallel training processes (default: one per CPU core)")
    parser.add_argument(
        "--data-dir", default="data", help="folder that contains MNIST/raw, for fig4 (default: ./data)"
    )
    parser.add_argument("--download", action="store_true", help="download MNIST into --data-dir if it is missing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.scale not in SCALES[args.target]:
        print(f"error: {args.target} has no {args.scale!r} scale; choose one of {', '.join(SCALES[args.target])}", file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 1:
        print(f"error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)

    if args.target == "fig3":
        from dilightning.reproduce import fig3

        summary = fig3.reproduce(scale=args.scale, output_dir=args.out, seed=args.seed, workers=args.workers)
    else:
        from dilightning.reproduce import fig4

        summary = fig4.reproduce(
            scale=args.scale,
            output_dir=args.out,
            seed=args.seed,
            workers=args.workers,
            data_dir=args.data_dir,
            download=args.download,
        )

    failed = [
        f"{group}: {label}"
        for group, entries in summary["runs"].items()
        for label, entry in entries.items()
        if entry["status"] != "ok"
    ]
    target = args.target
    print(f"{target} finished in {summary['wall_seconds']:.0f} s ({args.scale} scale, seed {args.seed}).")
    if failed:
        print(f"{len(failed)} run(s) did not finish (see {target}_summary.json): {'; '.join(failed)}")
    print(f"Wrote {args.out / (target + '.png')}, {target}.pdf, {target}_summary.json and {target}_data.npz.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
