"""Spectral abscissa ``λmax`` of every DI layer during training, with re-stabilization (Fig. 3c, h)."""

from __future__ import annotations

import logging

import pytorch_lightning as pl

from dilightning.callbacks.series import SeriesCallback
from dilightning.propagators import StabilizedFeedbackPropagator

logger = logging.getLogger(__name__)


class StabilityMonitor(SeriesCallback):
    """Record ``λmax`` of Eq. S24 (Podlaski & Machens 2020) for each layer with DI dynamics.

    Series ``lambda_max/<layer>`` hold the value after each update (step 0: before training). When a
    value is ``≥ 0`` and ``restabilize`` is set, SSA descent re-optimizes that layer's feedback and
    the value after the repair is recorded; ``restabilizations`` counts the repairs so far.
    Propagators without such dynamics (BP, FA, PBP) are ignored.

    Args:
        every_n_steps: check every this many updates.
        restabilize: repair unstable feedback with SSA descent.
        filename: CSV file name in the run's log directory.
        log_every_n_steps: send every this many steps to the logger (the saved series keeps all).
    """

    def __init__(
        self,
        every_n_steps: int = 1,
        *,
        restabilize: bool = True,
        filename: str = "stability.csv",
        log_every_n_steps: int = 1,
    ) -> None:
        super().__init__(filename, log_every_n_steps=log_every_n_steps)
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.restabilize = restabilize

    def _check(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        propagator = pl_module.propagator
        if not isinstance(propagator, StabilizedFeedbackPropagator):
            return
        weights = pl_module.network.weights
        eigenvalues = propagator.max_real_eigenvalues(weights)
        values = {f"lambda_max/{name}": value for name, value in eigenvalues.items()}
        if self.restabilize and any(value >= 0 for value in eigenvalues.values()):
            repaired = propagator.restabilize(weights, eigenvalues)
            logger.info("step %d: re-stabilized %s", trainer.global_step, ", ".join(repaired))
            values.update({f"lambda_max/{name}": value for name, value in propagator.max_real_eigenvalues(weights).items()})
        values["restabilizations"] = propagator.restabilization_count
        self.record(trainer, trainer.global_step, values)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer, pl_module)

    def on_weight_update(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._check(trainer, pl_module)
