"""Speed and memory benchmark of every rule: ``python -m dilightning.benchmark [--json FILE]``.

Measures, in one run and after warm-up, the median time of one propagation (``propagator(...)``)
and of one training update (forward pass, propagation, gradients, optimizer step, as the module
performs them: written directly for online shapes, by the surrogate backward pass for batches) for
every rule at the shapes of the experiments of Podlaski & Machens (2020), Lightning's per-update overhead in online
training, the peak memory of DI for different numbers of Euler steps and, with ``--fig3``, the
wall time of ``reproduce fig3 --scale paper``. Ratios to BP and to NDI come from the same run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from dilightning.inversion import native

logger = logging.getLogger(__name__)

SHAPES: dict[str, dict[str, Any]] = {
    "mnist": {
        "layer_sizes": [784, 1000, 10],
        "nonlinearities": ["tanh", "softmax"],
        "batch": 1,
        "loss": "cross_entropy",
        "reduction": "mean",
        "weight_decay": 1e-6,
    },
    "autoencoder": {
        "layer_sizes": [784, 500, 250, 30, 250, 500, 784],
        "nonlinearities": ["tanh", "tanh", "linear", "tanh", "tanh", "linear"],
        "batch": 100,
        "loss": "mse",
        "reduction": "sum",
        "weight_decay": 1e-10,
    },
    "regression": {
        "layer_sizes": [30, 20, 10, 10],
        "nonlinearities": ["tanh", "tanh", "linear"],
        "batch": 1,
        "loss": "mse",
        "reduction": "mean",
        "weight_decay": 0.0,
    },
}
# The same networks shrunk about tenfold, for a quick check that the benchmark runs.
SMALL_SIZES = {
    "mnist": [78, 100, 10],
    "autoencoder": [78, 50, 25, 3, 25, 50, 78],
    "regression": [30, 20, 10, 10],
}
ALGORITHMS: dict[str, dict[str, Any]] = {
    "BP": {"propagator": "BP"},
    "FA": {"propagator": "FA"},
    "PBP": {"propagator": "PBP"},
    "NDI": {"propagator": "NDI", "alpha": 1e-2},
    "DI": {"propagator": "DI", "alpha": 1e-2},
    "DI-euler": {"propagator": "DI", "alpha": 1e-2, "method": "euler"},
    "DI-nonlinear": {"propagator": "DI", "alpha": 1e-2, "nonlinear_controller": True},
    "DI-nonlinear-torch": {"propagator": "DI", "alpha": 1e-2, "nonlinear_controller": True, "_native": False},
    "SLDI": {"propagator": "SLDI", "alpha": 1e-2},
}
# Rules whose cost grows with the number of Euler steps. On large shapes they are timed with fewer
# steps and scaled up, because the cost of an Euler loop is linear in its length.
STEPPED = {"DI-euler", "DI-nonlinear", "DI-nonlinear-torch", "SLDI"}


@dataclass
class Record:
    """One measurement: the median over ``repeats`` timed calls, in seconds."""

    algorithm: str
    shape: str
    batch: int
    measurement: str
    seconds_median: float
    repeats: int
    ratio_to_bp: float | None = None
    ratio_to_ndi: float | None = None
    extrapolated_from_steps: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _time(function: Callable[[], object], *, min_seconds: float, max_repeats: int) -> tuple[float, int]:
    """Return the median time of ``function`` after two warm-up calls, and the number of repeats."""
    function()
    function()
    times: list[float] = []
    while len(times) < 3 or (sum(times) < min_seconds and len(times) < max_repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), len(times)


def _build(shape: dict[str, Any], options: dict[str, Any]):
    from dilightning.models import FeedforwardModule

    options = {key: value for key, value in options.items() if not key.startswith("_")}
    module = FeedforwardModule(
        shape["layer_sizes"],
        shape["nonlinearities"],
        loss=shape["loss"],
        reduction=shape["reduction"],
        weight_scale=0.05,
        lr=1e-6,  # small, so that hundreds of timed updates barely change the weights
        weight_decay=shape["weight_decay"],
        **options,
    )
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape["batch"], shape["layer_sizes"][0], generator=generator)
    if shape["loss"] == "cross_entropy":
        target = torch.randint(0, shape["layer_sizes"][-1], (shape["batch"],), generator=generator)
    else:
        target = torch.rand(shape["batch"], shape["layer_sizes"][-1], generator=generator)
    return module, x, target


def measure_rules(shape_names: list[str], algorithms: list[str], *, steps: int, min_seconds: float) -> list[Record]:
    """Time propagation and training updates of every rule at every shape."""
    records: list[Record] = []
    for shape_name in shape_names:
        shape = SHAPES[shape_name]
        large = shape["batch"] * sum(a * b for a, b in zip(shape["layer_sizes"][1:-1], shape["layer_sizes"][2:])) > 1e6
        for algorithm in algorithms:
            options = dict(ALGORITHMS[algorithm])
            use_native = options.get("_native", True)
            timed_steps = steps
            if algorithm in STEPPED:
                timed_steps = min(steps, 20) if large else steps
                options["steps"] = timed_steps
            module, x, target = _build(shape, options)
            optimizer = module.configure_optimizers()
            # Batch-1 shapes train online, where the module writes the gradients directly.
            online = shape["batch"] == 1
            with torch.no_grad():
                _, cache = module.network.forward_for_training(x)
            delta_out = torch.randn(shape["batch"], shape["layer_sizes"][-1])

            def propagate() -> object:
                return module.propagator(module.network.weights, cache, delta_out)

            def update() -> object:
                return module.update(x, target, optimizer, direct_gradients=online)

            scale = steps / timed_steps
            original = native.available
            if not use_native:
                native.available = lambda *tensors: False  # type: ignore[assignment]
            try:
                for measurement, function in (("propagation", propagate), ("training_step", update)):
                    seconds, repeats = _time(function, min_seconds=min_seconds, max_repeats=200)
                    records.append(
                        Record(
                            algorithm,
                            shape_name,
                            shape["batch"],
                            measurement,
                            seconds * scale,
                            repeats,
                            extrapolated_from_steps=timed_steps if scale != 1 else None,
                        )
                    )
            finally:
                native.available = original  # type: ignore[assignment]
            logger.info("%s on %s: %s", algorithm, shape_name, f"{records[-1].seconds_median * 1e3:.3f} ms per update")
    _add_ratios(records)
    return records


def _add_ratios(records: list[Record]) -> None:
    reference = {(r.shape, r.measurement, r.algorithm): r.seconds_median for r in records}
    for record in records:
        bp = reference.get((record.shape, record.measurement, "BP"))
        ndi = reference.get((record.shape, record.measurement, "NDI"))
        record.ratio_to_bp = record.seconds_median / bp if bp else None
        record.ratio_to_ndi = record.seconds_median / ndi if ndi else None


def measure_lightning_overhead(samples: int) -> list[Record]:
    """Time online training (one update per example) through a Lightning Trainer.

    Compares one example per Lightning step with 100 examples per step split into sequential
    updates (``update_batch_size=1``); both apply identical updates in the same order.
    """
    import pytorch_lightning as pl

    from dilightning.data import NonlinearRegressionDataModule
    from dilightning.models import FeedforwardModule

    records = []
    for loader_batch in (1, 100):
        module = FeedforwardModule([30, 20, 10, 10], ["tanh", "tanh", "linear"], "BP", update_batch_size=1)
        data = NonlinearRegressionDataModule(num_samples=samples, val_samples=1, batch_size=loader_batch)
        trainer = pl.Trainer(
            max_epochs=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            accelerator="cpu",
        )
        start = time.perf_counter()
        trainer.fit(module, datamodule=data)
        seconds = (time.perf_counter() - start) / samples
        records.append(
            Record("BP", "regression", 1, f"lightning_update_loader_batch_{loader_batch}", seconds, samples)
        )
    return records


def _rss_child(steps: int, method: str, size: int) -> int:
    """Return the growth of peak resident memory (KiB) during one DI call in a fresh process."""
    code = f"""
import resource, torch
from dilightning.inversion import dynamic_inversion
torch.manual_seed(0)
W = torch.randn({size}, {size} // 2) / {size} ** 0.5
delta = torch.randn(10, {size})
dynamic_inversion(W, -W.T, delta, 0.01, steps=2, method={method!r})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
dynamic_inversion(W, -W.T, delta, 0.01, steps={steps}, method={method!r})
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(result.stdout.strip().splitlines()[-1])


def measure_memory(size: int) -> list[Record]:
    """Peak memory growth of one DI call (batch 10, a ``size × size/2`` layer) for 100 to 10 000 steps."""
    records = []
    for method in ("closed_form", "euler"):
        for steps in (100, 1000, 10000):
            kib = _rss_child(steps, method, size)
            records.append(
                Record(f"DI-{method}", f"{size}x{size // 2}", 10, "peak_memory_growth", 0.0, 1, extra={"steps": steps, "kib": kib})
            )
    return records


def measure_fig3(workers: int | None) -> Record:
    """Wall time of ``python -m dilightning.reproduce fig3 --scale paper`` in a subprocess."""
    with tempfile.TemporaryDirectory() as directory:
        command = [sys.executable, "-m", "dilightning.reproduce", "fig3", "--scale", "paper", "--out", directory]
        if workers:
            command += ["--workers", str(workers)]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        return Record("all", "fig3", 1, "reproduce_fig3_paper", time.perf_counter() - start, 1)


def _print_table(records: list[Record]) -> None:
    print(f"{'shape':<12} {'algorithm':<20} {'measurement':<16} {'median':>12} {'÷BP':>8} {'÷NDI':>8}")
    for record in records:
        if record.measurement not in ("propagation", "training_step"):
            continue
        ratio_bp = f"{record.ratio_to_bp:.2f}" if record.ratio_to_bp else "-"
        ratio_ndi = f"{record.ratio_to_ndi:.2f}" if record.ratio_to_ndi else "-"
        note = " *" if record.extrapolated_from_steps else ""
        print(
            f"{record.shape:<12} {record.algorithm:<20} {record.measurement:<16} "
            f"{record.seconds_median * 1e3:>9.3f} ms {ratio_bp:>8} {ratio_ndi:>8}{note}"
        )
    if any(record.extrapolated_from_steps for record in records):
        print("* timed with fewer Euler steps and scaled to the full count")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dilightning.benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="write all records to this JSON file")
    parser.add_argument(
        "--size",
        choices=("paper", "small"),
        default="paper",
        help="paper shapes, or a ~10x smaller smoke run with 100 instead of 1000 Euler steps",
    )
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=None, help="shapes to time (default: all)")
    parser.add_argument("--algorithms", nargs="+", choices=list(ALGORITHMS), default=None, help="rules to time (default: all)")
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=None,
        help="time each call for at least this long (default: 1 at paper size, 0.05 at small size)",
    )
    parser.add_argument("--skip-memory", action="store_true", help="skip the peak-memory measurement (6 subprocesses)")
    parser.add_argument("--fig3", action="store_true", help="also time 'reproduce fig3 --scale paper' end to end")
    parser.add_argument("--workers", type=int, default=None, help="worker processes for --fig3")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("pytorch_lightning", "pytorch_lightning.utilities.rank_zero", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    if args.size == "small":
        for name, sizes in SMALL_SIZES.items():
            SHAPES[name] = {**SHAPES[name], "layer_sizes": sizes, "batch": min(SHAPES[name]["batch"], 10)}

    shapes = args.shapes or list(SHAPES)
    algorithms = args.algorithms or list(ALGORITHMS)
    steps = 1000 if args.size == "paper" else 100
    started = time.perf_counter()
    min_seconds = args.min_seconds
    if min_seconds is None:
        min_seconds = 1.0 if args.size == "paper" else 0.05
    records = measure_rules(shapes, algorithms, steps=steps, min_seconds=min_seconds)
    records += measure_lightning_overhead(2000 if args.size == "paper" else 200)
    if not args.skip_memory:
        records += measure_memory(200 if args.size == "paper" else 40)
    if args.fig3:
        records.append(measure_fig3(args.workers))

    environment = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.platform(),
        "python": platform.python_version(),
        "compiled_euler_kernels": native.available(torch.zeros(1)),
        "size": args.size,
        "euler_steps": steps,
        "benchmark_seconds": round(time.perf_counter() - started, 1),
    }
    print(f"torch {environment['torch']}, {environment['threads']} threads, {environment['processor']}")
    _print_table(records)
    for record in records:
        if record.measurement.startswith("lightning_update"):
            print(f"online update through Lightning, {record.measurement}: {record.seconds_median * 1e3:.3f} ms")
        elif record.measurement == "peak_memory_growth":
            print(f"{record.algorithm} peak memory growth, {record.extra['steps']} steps: {record.extra['kib']} KiB")
        elif record.measurement == "reproduce_fig3_paper":
            print(f"reproduce fig3 --scale paper: {record.seconds_median:.0f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"environment": environment, "records": [asdict(record) for record in records]}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
