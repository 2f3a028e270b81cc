"""Per-update series that a callback records, logs to the Lightning logger and saves as CSV."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import pytorch_lightning as pl

logger = logging.getLogger(__name__)


class SeriesCallback(pl.Callback):
    """Callback base that collects named series indexed by optimizer step.

    Values go to the trainer's logger (TensorBoard by default) as they are recorded and to
    ``<log_dir>/<filename>`` as a wide CSV (``step`` plus one column per series) when training ends.
    Subclasses record in ``on_weight_update(trainer, pl_module)``, which
    :class:`~dilightning.models.FeedforwardModule` calls after every weight update, also when one
    Lightning step holds several updates. A subclass that buffers updates and evaluates them
    together overrides :meth:`flush`; it runs before a checkpoint is written, when training ends
    and when an exception stops training, so the saved series always covers every update so far.

    Args:
        filename: CSV file name inside the run's log directory.
        log_to_logger: also send values to ``trainer.logger``.
        log_every_n_steps: send only the values of every this many steps to the logger; the saved
            series keeps every step. TensorBoard shows at most 1000 points per curve by default, and
            each logged value costs about as much as a small online update.
    """

    def __init__(self, filename: str, *, log_to_logger: bool = True, log_every_n_steps: int = 1) -> None:
        super().__init__()
        if log_every_n_steps < 1:
            raise ValueError(f"log_every_n_steps must be >= 1, got {log_every_n_steps}")
        self.filename = filename
        self.log_to_logger = log_to_logger
        self.log_every_n_steps = log_every_n_steps
        self._attached: tuple[pl.Trainer, pl.LightningModule] | None = None
        self.series: dict[str, dict[int, float]] = {}
        self.saved_path: Path | None = None

    def record(self, trainer: pl.Trainer, step: int, values: dict[str, float]) -> None:
        """Store ``values`` at ``step`` and forward them to the logger."""
        for name, value in values.items():
            self.series.setdefault(name, {})[step] = float(value)
        if self.log_to_logger and trainer.logger is not None and values and step % self.log_every_n_steps == 0:
            trainer.logger.log_metrics({name: float(value) for name, value in values.items()}, step=step)

    def as_arrays(self) -> tuple[list[int], dict[str, list[float]]]:
        """Return the sorted steps and, per series, its values on those steps (NaN where missing)."""
        steps = sorted({step for values in self.series.values() for step in values})
        columns = {name: [values.get(step, math.nan) for step in steps] for name, values in self.series.items()}
        return steps, columns

    def save(self, directory: str | Path) -> Path:
        """Write the series to ``directory/filename`` and return the path."""
        path = Path(directory) / self.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        steps, columns = self.as_arrays()
        names = sorted(columns)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["step", *names])
            for row, step in enumerate(steps):
                writer.writerow([step, *(repr(columns[name][row]) for name in names)])
        self.saved_path = path
        return path

    def flush(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Evaluate and record the buffered updates (no-op for callbacks that record at once)."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._attached = (trainer, pl_module)

    def state_dict(self) -> dict[str, dict[int, float]]:
        """Return the series recorded so far; Lightning stores it in checkpoints."""
        if self._attached is not None:
            self.flush(*self._attached)
        return {"series": {name: dict(values) for name, values in self.series.items()}}

    def load_state_dict(self, state_dict: dict[str, dict[int, float]]) -> None:
        """Restore the series of a resumed run, so its CSV covers the whole training."""
        self.series = {name: {int(step): float(value) for step, value in values.items()} for name, values in state_dict.get("series", {}).items()}

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # A run stopped by divergence keeps the values of the updates before it.
        try:
            self.flush(trainer, pl_module)
        except Exception:  # noqa: BLE001 - never hide the exception that stopped training
            logger.warning("%s could not evaluate its last buffered updates", type(self).__name__, exc_info=True)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.flush(trainer, pl_module)
        # Under DDP, trainer.log_dir is a broadcast from rank 0, so every rank has to ask for it.
        directory = trainer.log_dir or trainer.default_root_dir
        if trainer.is_global_zero:
            self.save(directory)
