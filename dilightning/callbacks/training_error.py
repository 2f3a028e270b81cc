"""Error over the whole training set after every update (the curves of Podlaski & Machens 2020, Fig. 3a, b, g)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytorch_lightning as pl
import torch
from torch import Tensor

from dilightning.callbacks.series import SeriesCallback
from dilightning.inversion.nonlinearities import Nonlinearity

SERIES = "train_set/sse"


def batched_squared_error(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor | None],
    nonlinearities: Sequence[Nonlinearity],
    inputs: Tensor,
    targets: Tensor,
    *,
    block_size: int = 512,
) -> Tensor:
    """Return ``Σ_n ‖y_n − t_n‖²`` for each of ``S`` parameter sets of one feedforward network.

    Args:
        weights: per layer, the stacked weights ``(S, d_l, d_{l-1})``.
        biases: per layer, the stacked biases ``(S, d_l)`` or ``None``.
        nonlinearities: ``g_1 … g_L``.
        inputs: ``(N, d_0)``.
        targets: ``(N, d_L)``.
        block_size: samples per block, so that intermediate activations stay in cache.

    Returns:
        The summed squared error of every parameter set, ``(S,)``.

    Activations are kept with samples along the last dimension, ``(S, d_l, block)``, so every layer
    is a batched product ``W_l h`` whose long dimension is the sample block; with samples first,
    the products of narrow layers run several times slower. ``tanh`` is the costliest remaining
    part, and PyTorch's CPU sigmoid is several times faster, so every hidden tanh layer is evaluated as
    ``tanh(a) = 2 σ(2a) − 1`` with the factors folded into the weights and biases around it. The
    result is equal up to float rounding.
    """
    folded = []
    scale, shift = 1.0, 0.0  # the previous activation h equals scale * s + shift for the stored s
    last = len(weights) - 1
    for index, (weight, bias, g) in enumerate(zip(weights, biases, nonlinearities)):
        effective_weight = scale * weight
        # A column (S, d_l, 1) that broadcasts over the sample block.
        effective_bias = (shift * weight.sum(-1) + (bias if bias is not None else 0.0)).unsqueeze(-1)
        if g.name == "tanh" and index < last:  # the output itself must stay unscaled
            folded.append((2.0 * effective_weight, 2.0 * effective_bias, torch.sigmoid))
            scale, shift = 2.0, -1.0
        elif g.name == "linear":
            folded.append((effective_weight, effective_bias, None))
            scale, shift = 1.0, 0.0
        else:
            folded.append((effective_weight, effective_bias, _out_of_place(g.function)))
            scale, shift = 1.0, 0.0
    count = weights[0].shape[0]
    columns_in = inputs.T.contiguous()  # (d_0, N)
    columns_target = targets.T.contiguous()  # (d_L, N)
    total = torch.zeros(count, dtype=weights[0].dtype, device=weights[0].device)
    # Fresh multi-megabyte temporaries for every block made this evaluation about three times
    # slower between training updates than on its own, so each layer reuses one buffer.
    buffers = [weight.new_empty(count, weight.shape[1], block_size) for weight, _, _ in folded]
    for start in range(0, inputs.shape[0], block_size):
        width = min(block_size, inputs.shape[0] - start)
        h = columns_in[:, start : start + width].expand(count, -1, -1)
        for (weight, bias, apply), buffer in zip(folded, buffers):
            out = buffer[..., :width]
            torch.baddbmm(bias, weight, h, out=out)  # W_l h + b_l, (S, d_l, block)
            h = apply(out, out=out) if apply is not None else out
        h.sub_(columns_target[:, start : start + width])
        total += h.square_().sum((1, 2))
    return total


def _out_of_place(function: Callable[[Tensor], Tensor]) -> Callable[..., Tensor]:
    """Wrap an elementwise ``function`` so that it accepts and fills ``out=`` like ``torch.sigmoid``."""

    def apply(values: Tensor, *, out: Tensor) -> Tensor:
        return out.copy_(function(values))

    return apply


class TrainingSetErrorMonitor(SeriesCallback):
    """Record the summed squared error ``Σ_n ‖y_n − t_n‖²`` over the full training set after each update.

    The value at step 0 is the error before any update. Evaluating every update one at a time would
    cost a Python-level forward pass per step, so the callback copies the parameters after each
    update into a buffer and evaluates a whole chunk of copies in one batched pass
    (:func:`batched_squared_error`).

    The training set comes from ``trainer.datamodule.full_training_set()`` unless ``dataset`` is
    given as ``(inputs, targets)``.

    Args:
        dataset: optional ``(inputs (N, d_0), targets (N, d_L))``.
        chunk_size: number of parameter copies evaluated together.
        filename: CSV file name in the run's log directory.
        log_every_n_steps: send every this many steps to the logger (the saved series keeps all).
    """

    def __init__(
        self,
        dataset: tuple[Tensor, Tensor] | None = None,
        *,
        chunk_size: int = 64,
        filename: str = "training_set_error.csv",
        log_every_n_steps: int = 1,
    ) -> None:
        super().__init__(filename, log_every_n_steps=log_every_n_steps)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.dataset = dataset
        self.chunk_size = chunk_size
        self._inputs: Tensor | None = None
        self._targets: Tensor | None = None
        self._weights: list[Tensor] = []
        self._biases: list[Tensor | None] = []
        self._steps: list[int] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        inputs, targets = self.dataset if self.dataset is not None else trainer.datamodule.full_training_set()
        self._inputs = inputs.to(pl_module.device, pl_module.dtype)
        self._targets = targets.to(pl_module.device, pl_module.dtype)
        layers = pl_module.network.layers
        self._weights = [layer.weight.new_empty((self.chunk_size, *layer.weight.shape)) for layer in layers]
        self._biases = [
            None if layer.bias is None else layer.bias.new_empty((self.chunk_size, *layer.bias.shape)) for layer in layers
        ]
        self._steps = []
        if trainer.global_step == 0:
            self._store(trainer, pl_module)  # the error before any update; a resumed run has it already

    def _store(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        slot = len(self._steps)
        with torch.no_grad():
            for layer, weights, biases in zip(pl_module.network.layers, self._weights, self._biases):
                weights[slot].copy_(layer.weight)
                if biases is not None:
                    biases[slot].copy_(layer.bias)
        self._steps.append(trainer.global_step)
        if len(self._steps) == self.chunk_size:
            self.flush(trainer, pl_module)

    def on_weight_update(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._store(trainer, pl_module)

    def flush(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        steps, self._steps = self._steps, []
        filled = len(steps)
        if filled == 0:
            return
        with torch.no_grad():
            errors = batched_squared_error(
                [weights[:filled] for weights in self._weights],
                [None if biases is None else biases[:filled] for biases in self._biases],
                pl_module.network.nonlinearities,
                self._inputs,
                self._targets,
            )
        for step, error in zip(steps, errors.tolist()):
            self.record(trainer, step, {SERIES: error})
