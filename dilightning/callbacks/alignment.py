"""Alignment angles between rules and between feedback and forward weights (Fig. 3d-f, i-k)."""

from __future__ import annotations

import pytorch_lightning as pl
from torch import Tensor

from dilightning.angles import matrix_angle, vector_angle
from dilightning.callbacks.series import SeriesCallback
from dilightning.inversion import non_dynamic_inversion, pseudo_inverse
from dilightning.propagators import FeedbackPropagator, StabilizedFeedbackPropagator, propagate_layerwise


class AlignmentMonitor(SeriesCallback):
    """Record, after each update, how the configured rule relates to its references.

    Series (angles in degrees, averaged over the batch; Podlaski & Machens 2020, Fig. 3):

    - ``feedback_angle/layer_<l>``: ``B_l ∠ −W_lᵀ`` for every rule with per-layer feedback (FA, NDI,
      DI, RepeatDI, SLDI), with the weights after the update;
    - ``ndi_angle/layer_<l>``: the rule's hidden error ``δ_l`` against sequential NDI computed with
      the same feedback, leak and forward pass (``δ_DI ∠ δ_NDI``, ``δ_SLDI ∠ δ_NDI``);
    - ``pbp_angle/layer_<l>``: the same against pseudobackprop (``δ_DI ∠ δ_PBP``).

    The error angles are recorded for the rules with controller dynamics (NDI, DI, RepeatDI, SLDI).

    Args:
        every_n_steps: record every this many updates.
        filename: CSV file name in the run's log directory.
    """

    def __init__(self, every_n_steps: int = 1, *, filename: str = "alignment.csv") -> None:
        super().__init__(filename)
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # The module copies its weights before an update only when that update will be recorded.
        pl_module.keep_step_record = (trainer.global_step + 1) % self.every_n_steps == 0

    def on_weight_update(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.keep_step_record = (trainer.global_step + 1) % self.every_n_steps == 0
        if trainer.global_step % self.every_n_steps != 0:
            return
        propagator = pl_module.propagator
        values: dict[str, float] = {}
        if isinstance(propagator, FeedbackPropagator):
            weights = pl_module.network.weights
            for index in range(1, len(weights)):
                angle = matrix_angle(propagator.feedback(index), -weights[index].detach().T)
                values[f"feedback_angle/layer_{index + 1}"] = angle
        if isinstance(propagator, StabilizedFeedbackPropagator) and pl_module.last_step is not None:
            values.update(self._error_angles(propagator, pl_module.last_step))
        if values:
            self.record(trainer, trainer.global_step, values)

    @staticmethod
    def _error_angles(propagator: StabilizedFeedbackPropagator, record) -> dict[str, float]:
        weights, cache, deltas = record.weights, record.cache, record.deltas
        output_error = deltas[-1]

        def ndi_rule(index: int, weight: Tensor, delta: Tensor) -> Tensor:
            return non_dynamic_inversion(weight, propagator.feedback(index), delta, propagator.alpha)

        def pbp_rule(index: int, weight: Tensor, delta: Tensor) -> Tensor:
            return pseudo_inverse(weight, delta)

        references = {
            "ndi_angle": propagate_layerwise(weights, cache, output_error, ndi_rule),
            "pbp_angle": propagate_layerwise(weights, cache, output_error, pbp_rule),
        }
        values = {}
        for prefix, reference in references.items():
            for layer, (delta, expected) in enumerate(zip(deltas[:-1], reference), start=1):
                values[f"{prefix}/layer_{layer}"] = float(vector_angle(delta, expected).nanmean())
        return values
