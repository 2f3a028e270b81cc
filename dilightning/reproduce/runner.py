"""Run training runs in parallel worker processes and collect the series their callbacks recorded."""

from __future__ import annotations

import importlib
import json
import logging
import multiprocessing
import os
import time
import traceback
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dilightning.reproduce.experiment import RunSpec

logger = logging.getLogger(__name__)

# Rough cost per update of each rule relative to BP; used only to start the longest runs first.
_RELATIVE_COST = {"BP": 1.0, "FA": 1.0, "PBP": 1.2, "NDI": 1.3, "DI": 2.0, "RepeatDI": 20.0, "SLDI": 15.0}


@dataclass
class RunResult:
    """Outcome of one run: its series (``name -> (steps, values)``), artifacts, status and wall time in seconds."""

    spec: RunSpec
    status: str
    seconds: float
    message: str = ""
    series: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    artifacts: dict[str, np.ndarray] = field(default_factory=dict)
    log_dir: str = ""
    cached: bool = False


def _monitors(spec: RunSpec) -> list:
    from dilightning.callbacks import AlignmentMonitor, StabilityMonitor, TrainingSetErrorMonitor, ValidationMonitor

    classes = {
        "training_set_error": TrainingSetErrorMonitor,
        "stability": StabilityMonitor,
        "alignment": AlignmentMonitor,
        "validation": ValidationMonitor,
    }
    unknown = sorted(set(spec.monitors) - set(classes))
    if unknown:
        raise ValueError(f"unknown monitors {unknown}; valid choices are {sorted(classes)}")
    return [classes[name](**options) for name, options in spec.monitors.items()]


def _artifacts(spec: RunSpec, model, datamodule) -> dict[str, np.ndarray]:
    """Compute the requested artifacts of a trained autoencoder: example reconstructions and codes."""
    import torch

    if not spec.artifacts:
        return {}
    inputs, _ = datamodule.evaluation_set()
    labels = datamodule.evaluation_labels()
    model.eval()
    with torch.no_grad():
        activations = model.network.activations(inputs[:2000])
    narrowest = int(np.argmin(model.network.layer_sizes[1:]))
    results = {}
    if "reconstructions" in spec.artifacts:
        results["inputs"] = inputs[:10].numpy()
        results["outputs"] = activations[-1][:10].numpy()
    if "codes" in spec.artifacts:
        results["codes"] = activations[narrowest].numpy()
        results["labels"] = labels[:2000].numpy()
    return results


def _quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Lightning's advice about data-loader workers, logging intervals and deprecated internals is
    # noise for these fixed, in-memory runs.
    for message in (".*does not have many workers.*", ".*smaller than the logging interval.*", ".*LeafSpec.*"):
        warnings.filterwarnings("ignore", message=message)


def run_spec(spec: RunSpec) -> RunResult:
    """Train one run described by ``spec`` and return its recorded series and artifacts."""
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.loggers import TensorBoardLogger

    from dilightning.models import DivergenceError, FeedforwardModule

    _quiet_lightning()
    torch.set_num_threads(spec.threads)
    start = time.perf_counter()
    log_root = Path(spec.output_dir) / "runs" / spec.experiment
    tensorboard = TensorBoardLogger(save_dir=str(log_root), name=spec.name, version="", default_hp_metric=False)
    callbacks = _monitors(spec)
    artifacts: dict[str, np.ndarray] = {}
    try:
        pl.seed_everything(spec.seed, workers=True, verbose=False)
        module_name, class_name = spec.data_class.rsplit(".", 1)
        datamodule = getattr(importlib.import_module(module_name), class_name)(**spec.data_args)
        model = FeedforwardModule(**spec.model)
        trainer_options = {
            **spec.trainer,
            "logger": tensorboard,
            "callbacks": callbacks,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "enable_checkpointing": False,
            "accelerator": "cpu",
            "devices": 1,
            "default_root_dir": str(log_root),
        }
        trainer = pl.Trainer(**trainer_options)
        if spec.validate_before_training:
            trainer.validate(model, datamodule=datamodule, verbose=False)
        trainer.fit(model, datamodule=datamodule)
        artifacts = _artifacts(spec, model, datamodule)
        status, message = "ok", ""
    except DivergenceError as error:
        status, message = "diverged", str(error)
    except Exception as error:  # noqa: BLE001 - one failing variant must not stop the figure
        status, message = "failed", f"{type(error).__name__}: {error}"
        logger.debug("run %s failed:\n%s", spec.name, traceback.format_exc())

    series = {}
    for callback in callbacks:
        steps, columns = callback.as_arrays()
        for name, values in columns.items():
            series[name] = (np.asarray(steps), np.asarray(values, dtype=np.float64))
    log_dir = tensorboard.log_dir
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        Path(log_dir) / "series.npz",
        **{f"{name}/steps": steps for name, (steps, _) in series.items()},
        **{f"{name}/values": values for name, (_, values) in series.items()},
        **{f"artifacts/{name}": value for name, value in artifacts.items()},
    )
    return RunResult(spec, status, time.perf_counter() - start, message, series, artifacts, log_dir)


def default_workers(count: int) -> int:
    """Return how many worker processes to use for ``count`` runs: one per CPU core, at most ``count``."""
    return max(1, min(count, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _estimated_cost(spec: RunSpec) -> float:
    samples = float(spec.data_args.get("num_samples", 1)) * float(spec.trainer.get("max_epochs", 1))
    return samples * _RELATIVE_COST.get(spec.model.get("propagator", "BP"), 1.0)


def _cache_path(cache_dir: Path, spec: RunSpec) -> Path:
    return cache_dir / f"{spec.experiment}-{spec.config_hash()}.npz"


def save_result(result: RunResult, cache_dir: Path) -> Path:
    """Store a finished run under the hash of its resolved config, for :func:`load_result`."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = _cache_path(cache_dir, result.spec)
    meta = {"status": result.status, "seconds": result.seconds, "message": result.message, "log_dir": result.log_dir}
    arrays = {f"series/{name}/steps": steps for name, (steps, _) in result.series.items()}
    arrays.update({f"series/{name}/values": values for name, (_, values) in result.series.items()})
    arrays.update({f"artifacts/{name}": value for name, value in result.artifacts.items()})
    partial = path.with_name(path.name + ".partial.npz")
    np.savez_compressed(partial, meta=np.asarray(json.dumps(meta)), **arrays)
    os.replace(partial, path)  # a run killed while saving never leaves a half-written result
    return path


def load_result(spec: RunSpec, cache_dir: Path) -> RunResult | None:
    """Return the stored result of a run with exactly this resolved config, or ``None``."""
    path = _cache_path(cache_dir, spec)
    if not path.is_file():
        return None
    with np.load(path) as stored:
        meta = json.loads(str(stored["meta"]))
        series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        artifacts: dict[str, np.ndarray] = {}
        for key in stored.files:
            if key.startswith("series/") and key.endswith("/steps"):
                name = key[len("series/") : -len("/steps")]
                series[name] = (stored[key], stored[f"series/{name}/values"])
            elif key.startswith("artifacts/"):
                artifacts[key[len("artifacts/") :]] = stored[key]
    return RunResult(spec, meta["status"], meta["seconds"], meta["message"], series, artifacts, meta["log_dir"], cached=True)


def run_specs(
    specs: list[RunSpec],
    *,
    workers: int | None = None,
    description: str = "runs",
    cache_dir: Path | None = None,
    load_cached: bool = True,
) -> list[RunResult]:
    """Run every spec, ``workers`` at a time in separate processes, with a progress bar.

    Results come back in the order of ``specs``. With one worker the runs execute in this process.
    With ``cache_dir``, each finished run is stored under the hash of its resolved config and, when
    ``load_cached`` is set, a run whose result is already stored is loaded instead of trained, so an
    interrupted figure resumes.
    """
    from tqdm.auto import tqdm

    results: list[RunResult | None] = [None] * len(specs)
    if cache_dir is not None and load_cached:
        for index, spec in enumerate(specs):
            results[index] = load_result(spec, cache_dir)
    pending = [index for index, result in enumerate(results) if result is None]
    if cache_dir is not None and len(pending) < len(specs):
        logger.info("%s: loaded %d finished runs from %s", description, len(specs) - len(pending), cache_dir)

    def finish(index: int, result: RunResult, progress) -> None:
        results[index] = result
        # A failed run (an exception other than divergence) is retried next time instead of cached.
        if cache_dir is not None and result.status in ("ok", "diverged"):
            save_result(result, cache_dir)
        progress.set_postfix_str(f"{specs[index].label}: {result.status}")
        progress.update()

    workers = workers or default_workers(max(1, len(pending)))
    order = sorted(pending, key=lambda index: -_estimated_cost(specs[index]))
    with tqdm(total=len(specs), initial=len(specs) - len(pending), desc=description, unit="run") as progress:
        if workers == 1:
            for index in order:
                finish(index, run_spec(specs[index]), progress)
        elif order:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = {pool.submit(run_spec, specs[index]): index for index in order}
                for future in as_completed(futures):
                    finish(futures[future], future.result(), progress)
    for result in results:
        assert result is not None
        if result.status != "ok":
            logger.warning("%s / %s %s: %s", result.spec.experiment, result.spec.name, result.status, result.message)
    return [result for result in results if result is not None]
