"""Validation metrics as a series over training, for curves such as Fig. 4a-b of Podlaski & Machens 2020."""

from __future__ import annotations

import pytorch_lightning as pl

from dilightning.callbacks.series import SeriesCallback


class ValidationMonitor(SeriesCallback):
    """Record the validation metrics after every validation run, indexed by the number of updates.

    Records the metrics named in ``metrics`` that the module logged (``val/error`` and ``val/loss``
    by default), plus ``epoch``: the fraction of training epochs completed at that point. A
    ``trainer.validate(...)`` call before ``trainer.fit(...)`` adds the untrained network at step 0.

    Args:
        metrics: names of logged validation metrics to record.
        filename: CSV file name in the run's log directory.
    """

    def __init__(self, metrics: tuple[str, ...] = ("val/error", "val/loss"), *, filename: str = "validation.csv") -> None:
        super().__init__(filename)
        self.metrics = metrics

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        values = {name: float(trainer.callback_metrics[name]) for name in self.metrics if name in trainer.callback_metrics}
        epoch = float(trainer.current_epoch)
        batches = trainer.num_training_batches
        if trainer.state.fn == "fit" and isinstance(batches, int) and batches > 0:
            epoch += trainer.fit_loop.epoch_loop.batch_progress.current.completed / batches
        values["epoch"] = epoch if trainer.global_step > 0 else 0.0
        self.record(trainer, trainer.global_step, values)
