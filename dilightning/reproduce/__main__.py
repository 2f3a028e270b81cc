"""Command line: ``python -m dilightning.reproduce {fig3,fig4,figS5,table1,all} [options]``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from dilightning.reproduce import FIGURES

SCALES = {
    "fig3": ("paper", "smoke"),
    "fig4": ("paper", "quick", "smoke"),
    "figS5": ("paper", "smoke"),
    "table1": ("paper", "quick", "smoke"),  # read from the configs: every scale writes the same table
    "all": ("paper", "quick", "smoke"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dilightning.reproduce",
        description="Regenerate the figures and tables of Podlaski & Machens (2020) by training every variant.",
    )
    parser.add_argument("target", choices=FIGURES, help="what to regenerate ('all': every figure, table and REPORT.md)")
    parser.add_argument(
        "--scale",
        choices=("paper", "quick", "smoke"),
        default="paper",
        help="'paper' runs Table 1's sizes; 'quick' (fig4, all) trains MNIST on a subset in about 15 minutes; "
        "'smoke' shrinks every run to seconds (default: paper)",
    )
    parser.add_argument("--out", type=Path, default=Path("paper_figures"), help="output folder (default: paper_figures)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data order, initial weights and feedback (default: 0)")
    parser.add_argument("--seeds", type=int, default=1, help="for 'all': repeat over seeds 0..N-1 and report mean ± std")
    parser.add_argument("--workers", type=int, default=None, help="parallel training processes (default: one per CPU core)")
    parser.add_argument("--data-dir", default="data", help="folder that contains MNIST/raw (default: ./data)")
    parser.add_argument("--download", action="store_true", help="download MNIST into --data-dir if it is missing")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="retrain every run instead of loading runs finished earlier from <out>/runs/cache (which is then updated)",
    )
    return parser.parse_args(argv)


def _failed_runs(summary: dict[str, Any]) -> list[str]:
    return [
        f"{group}: {label}"
        for group, entries in summary.get("runs", {}).items()
        for label, entry in entries.items()
        if isinstance(entry, dict) and entry.get("status", "ok") != "ok"
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    target = args.target
    if args.scale not in SCALES[target]:
        print(f"error: {target} has no {args.scale!r} scale; choose one of {', '.join(SCALES[target])}", file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 1:
        print(f"error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    if args.seeds < 1:
        print(f"error: --seeds must be >= 1, got {args.seeds}", file=sys.stderr)
        return 2
    try:
        return _run_target(args)
    except FileNotFoundError as error:  # missing data files: one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2


def _run_target(args: argparse.Namespace) -> int:
    """Reproduce ``args.target`` and print what was written; return the exit status."""
    target = args.target
    args.out.mkdir(parents=True, exist_ok=True)
    common = {"output_dir": args.out, "seed": args.seed, "workers": args.workers, "resume": not args.fresh}

    if target == "fig3":
        from dilightning.reproduce import fig3

        summary = fig3.reproduce(scale=args.scale, **common)
        written = ["fig3.png", "fig3.pdf", "fig3_summary.json", "fig3_data.npz"]
    elif target == "fig4":
        from dilightning.reproduce import fig4

        summary = fig4.reproduce(scale=args.scale, data_dir=args.data_dir, download=args.download, **common)
        written = ["fig4.png", "fig4.pdf", "fig4_summary.json", "fig4_data.npz"]
    elif target == "figS5":
        from dilightning.reproduce import figS5

        summary = figS5.reproduce(scale=args.scale, output_dir=args.out, seed=args.seed)
        written = ["figS5.png", "figS5.pdf", "figS5_summary.json", "figS5_data.npz"]
    elif target == "table1":
        from dilightning.reproduce import table1

        table1.reproduce(output_dir=args.out)
        print(f"Wrote {args.out / 'table1.md'}.")
        return 0
    else:
        from dilightning.reproduce import report

        summary = report.reproduce_all(
            scale=args.scale,
            output_dir=args.out,
            seeds=args.seeds,
            workers=args.workers,
            data_dir=args.data_dir,
            download=args.download,
            resume=not args.fresh,
        )
        holding = sum(claim["holds"] == "yes" for claim in summary["claims"].values())
        print(f"all finished in {summary['wall_seconds']:.0f} s: {holding} of {len(summary['claims'])} claims hold.")
        print(f"Wrote {args.out / 'REPORT.md'}, table1.md and every figure under {args.out}.")
        return 0

    print(f"{target} finished in {summary['wall_seconds']:.0f} s ({args.scale} scale, seed {args.seed}).")
    failed = _failed_runs(summary)
    if failed:
        print(f"{len(failed)} run(s) did not finish (see {target}_summary.json): {'; '.join(failed)}")
    print(f"Wrote {args.out / written[0]}, " + ", ".join(written[1:]) + ".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
