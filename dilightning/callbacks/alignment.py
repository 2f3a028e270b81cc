"""Alignment angles between rules and between feedback and forward weights (Fig. 3d-f, i-k)."""

from __future__ import annotations

from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from torch import Tensor

from dilightning.angles import vector_angle
from dilightning.callbacks.series import SeriesCallback
from dilightning.inversion import non_dynamic_inversion, pseudo_inverse
from dilightning.propagators import FeedbackPropagator, ForwardCache, StabilizedFeedbackPropagator, propagate_layerwise


@dataclass
class _Snapshot:
    """Tensors of one recorded update that its angles need, as detached copies or fresh results."""

    step: int
    weights_after: list[Tensor]  # [W_2 … W_L] after the update, for B ∠ −Wᵀ
    feedback: list[Tensor]  # [B_2 … B_L] at the time of recording
    weights_before: list[Tensor] | None = None  # [W_1 … W_L] that produced the errors
    derivatives: list[Tensor] | None = None  # [g'(a_1) … g'(a_{L-1})], each (N, d_l)
    deltas: list[Tensor] | None = None  # the rule's [δ_1 … δ_L], each (N, d_l)


class AlignmentMonitor(SeriesCallback):
    """Record, after each update, how the configured rule relates to its references.

    Series (angles in degrees, averaged over the batch; Podlaski & Machens 2020, Fig. 3):

    - ``feedback_angle/layer_<l>``: ``B_l ∠ −W_lᵀ`` for every rule with per-layer feedback (FA, NDI,
      DI, RepeatDI, SLDI), with the weights after the update;
    - ``ndi_angle/layer_<l>``: the rule's hidden error ``δ_l`` against sequential NDI computed with
      the same feedback, leak and forward pass (``δ_DI ∠ δ_NDI``, ``δ_SLDI ∠ δ_NDI``);
    - ``pbp_angle/layer_<l>``: the same against pseudobackprop (``δ_DI ∠ δ_PBP``).

    The error angles are recorded for the rules with controller dynamics (NDI, DI, RepeatDI, SLDI).

    Each update only copies what its angles need; the angles of ``chunk_size`` updates are then
    computed together, with the reference rules applied to the stacked matrices (``torch.vmap``),
    so that online training does not pay a dozen small tensor operations per update.

    Args:
        every_n_steps: record every this many updates.
        chunk_size: number of recorded updates whose angles are computed together.
        filename: CSV file name in the run's log directory.
        log_every_n_steps: send every this many steps to the logger (the saved series keeps all).
    """

    def __init__(
        self,
        every_n_steps: int = 1,
        *,
        chunk_size: int = 64,
        filename: str = "alignment.csv",
        log_every_n_steps: int = 1,
    ) -> None:
        super().__init__(filename, log_every_n_steps=log_every_n_steps)
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.every_n_steps = every_n_steps
        self.chunk_size = chunk_size
        self._pending: list[_Snapshot] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # The module copies its weights before an update only when that update will be recorded.
        super().setup(trainer, pl_module, stage)
        pl_module.keep_step_record = (trainer.global_step + 1) % self.every_n_steps == 0

    def on_weight_update(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.keep_step_record = (trainer.global_step + 1) % self.every_n_steps == 0
        if trainer.global_step % self.every_n_steps != 0:
            return
        propagator = pl_module.propagator
        if not isinstance(propagator, FeedbackPropagator):
            return
        weights = pl_module.network.weights
        snapshot = _Snapshot(
            step=trainer.global_step,
            weights_after=[weight.detach().clone() for weight in weights[1:]],
            feedback=[propagator.feedback(index).clone() for index in range(1, len(weights))],
        )
        record = pl_module.last_step
        if isinstance(propagator, StabilizedFeedbackPropagator) and record is not None:
            snapshot.weights_before = record.weights
            snapshot.derivatives = [d.detach() for d in record.cache.derivatives]
            snapshot.deltas = [delta.detach() for delta in record.deltas]
        if self._pending and not self._stackable(self._pending[0], snapshot):
            self.flush(trainer, pl_module)  # a smaller last batch starts a new chunk
        self._pending.append(snapshot)
        if len(self._pending) >= self.chunk_size:
            self.flush(trainer, pl_module)

    @staticmethod
    def _stackable(first: _Snapshot, other: _Snapshot) -> bool:
        if (first.deltas is None) != (other.deltas is None):
            return False
        return first.deltas is None or first.deltas[-1].shape == other.deltas[-1].shape

    def flush(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        columns: dict[str, Tensor] = {}
        for layer in range(len(pending[0].feedback)):
            feedback = torch.stack([snapshot.feedback[layer] for snapshot in pending])
            weight = torch.stack([snapshot.weights_after[layer] for snapshot in pending])
            angle = vector_angle(feedback.flatten(1), (-weight.transpose(1, 2)).flatten(1))
            columns[f"feedback_angle/layer_{layer + 2}"] = angle
        if pending[0].deltas is not None:
            columns.update(self._error_angles(pl_module.propagator, pending))
        rows = {name: values.tolist() for name, values in columns.items()}
        for row, snapshot in enumerate(pending):
            self.record(trainer, snapshot.step, {name: values[row] for name, values in rows.items()})

    @staticmethod
    def _error_angles(propagator: StabilizedFeedbackPropagator, pending: list[_Snapshot]) -> dict[str, Tensor]:
        """Angles of the stacked rule errors to sequential NDI and to PBP, one value per update."""
        num_weights = len(pending[0].weights_before)
        weights = [torch.stack([snapshot.weights_before[i] for snapshot in pending]) for i in range(num_weights)]
        # Indexed like the weights: the first weight has no feedback.
        feedback = [None, *(torch.stack([snapshot.feedback[i] for snapshot in pending]) for i in range(num_weights - 1))]
        derivatives = [torch.stack([snapshot.derivatives[i] for snapshot in pending]) for i in range(num_weights - 1)]
        deltas = [torch.stack([snapshot.deltas[i] for snapshot in pending]) for i in range(num_weights)]
        cache = ForwardCache(inputs=[], pre_activations=[], nonlinearities=[], _derivatives=derivatives)
        alpha = propagator.alpha

        def ndi_one(weight: Tensor, feedback_matrix: Tensor, delta: Tensor) -> Tensor:
            return non_dynamic_inversion(weight, feedback_matrix, delta, alpha)

        def ndi_rule(index: int, weight: Tensor, delta: Tensor) -> Tensor:
            return torch.vmap(ndi_one)(weight, feedback[index], delta)

        def pbp_rule(index: int, weight: Tensor, delta: Tensor) -> Tensor:
            return torch.vmap(pseudo_inverse)(weight, delta)

        references = {
            "ndi_angle": propagate_layerwise(weights, cache, deltas[-1], ndi_rule),
            "pbp_angle": propagate_layerwise(weights, cache, deltas[-1], pbp_rule),
        }
        columns = {}
        for prefix, reference in references.items():
            for layer, (delta, expected) in enumerate(zip(deltas[:-1], reference), start=1):
                columns[f"{prefix}/layer_{layer}"] = vector_angle(delta, expected).nanmean(dim=-1)
        return columns
