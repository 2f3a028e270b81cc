"""LightningModule that trains a feedforward network with any error-propagation rule.

Training uses manual optimization. Each step runs the forward pass, computes every layer's error
``δ_l`` with the configured :class:`~dilightning.propagators.ErrorPropagator` and turns the
errors into gradients ``∂/∂W_l = δ_l h_{l-1}ᵀ`` and ``∂/∂b_l = δ_l`` (Podlaski & Machens 2020,
Eq. 2) by back-propagating the surrogate ``Σ_l ⟨a_l, stopgrad(δ_l)⟩`` through each layer alone
(online updates in full precision write these gradients directly, which is cheaper).
Because the update arrives as ordinary ``.grad`` tensors, the optimizer (SGD with momentum or
weight decay, Adam), gradient clipping and DDP's gradient all-reduce work unchanged.

Hooks implemented: ``training_step`` (propagate errors and update, possibly several times per
loaded batch), ``validation_step`` and ``test_step`` (loss and error rate), ``configure_optimizers``.
Callbacks that define ``on_weight_update(trainer, pl_module)`` are called after every update.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
import torchmetrics
from pytorch_lightning.plugins.precision import DoublePrecision, Precision
from torch import Tensor

from dilightning.models.losses import check_loss, output_error, per_sample_loss
from dilightning.models.network import FeedforwardNetwork
from dilightning.propagators import ErrorPropagator, ForwardCache, build_propagator

logger = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam")
# Precision plugins that neither scale the loss nor cast inside the backward pass.
_PLAIN_PRECISION = (Precision, DoublePrecision)


class DivergenceError(RuntimeError):
    """Raised when training produces NaN or Inf in an error, a weight or the loss."""

REDUCTIONS = ("mean", "sum")


@dataclass
class StepRecord:
    """Errors and inputs of one training step, kept for callbacks that compare rules.

    ``weights`` are detached copies of ``[W_1, …, W_L]`` from before the update, ``deltas`` the
    propagated ``[δ_1, …, δ_L]``.
    """

    weights: list[Tensor]
    cache: ForwardCache
    deltas: list[Tensor]


class FeedforwardModule(pl.LightningModule):
    """Feedforward network trained with a pluggable credit-assignment rule.

    Args:
        layer_sizes: ``[d_0, …, d_L]``, e.g. ``[784, 1000, 10]``.
        nonlinearities: one per layer, e.g. ``["tanh", "softmax"]``.
        propagator: ``"BP"``, ``"FA"``, ``"PBP"``, ``"NDI"``, ``"DI"``, ``"RepeatDI"`` or ``"SLDI"``.
        alpha: controller leak ``α`` of the inversion rules.
        feedback_init: ``"tr"`` (``B = −W(0)ᵀ``), ``"scaled_tr"`` or ``"random"``; rule default if unset.
        feedback_scale: ``r`` of ``U(−r, r)`` for random feedback.
        feedback_gain: ``k`` of ``−k W(0)ᵀ`` for ``"scaled_tr"``.
        ssa_target: spectral abscissa that SSA stabilization aims below.
        dt: Euler step of the simulated controllers.
        steps: Euler steps per backward pass.
        nonlinear_controller: put ``g`` inside the controller (Eq. 14) instead of multiplying by ``g'``.
        expanding_controller: use the controller of Eqs. S1-S2 for expanding layers.
        method: DI integration, ``"auto"``, ``"closed_form"`` or ``"euler"``.
        max_delta_norm: clip each hidden error vector to this norm.
        loss: ``"mse"`` (``½‖y − t‖²`` per sample) or ``"cross_entropy"``.
        reduction: ``"mean"`` or ``"sum"`` of the per-sample updates over a batch.
        optimizer: ``"sgd"`` or ``"adam"``.
        lr: learning rate.
        momentum: SGD momentum.
        weight_decay: L2 weight decay added by the optimizer.
        fixed_norm_updates: rescale every parameter's update to unit norm before the optimizer step,
            so each step has length ``lr`` (Fig. 3b).
        gradient_clip_val: clip the global norm of the update to this value.
        update_batch_size: examples per weight update. Each loaded batch is split into chunks of
            this size that update the weights one after the other (1 gives online learning with
            any loader batch size); ``None`` makes every loaded batch one update. With full
            (32- or 64-bit) precision these updates write the gradients of Eq. 2 directly instead
            of back-propagating the surrogate loss (same numbers, a fraction of the cost), so
            Lightning's ``on_before_backward``/``on_after_backward`` hooks do not run for them.
        online_threads: PyTorch intra-op threads used on the CPU while a loaded batch is split into
            sequential updates (``update_batch_size``). One-example products are too small to gain
            from several threads, and synchronizing them made an online MNIST epoch about twice as
            slow on two cores. ``None`` keeps PyTorch's setting; validation is unaffected.
        check_finite: stop with :class:`DivergenceError` (naming the update, layer and rule) as soon
            as an error, a weight or the loss is NaN or Inf.
        bias: whether layers have biases.
        weight_init: ``"uniform"`` or ``"orthogonal"``.
        weight_scale: ``r`` of the uniform weight initialization.
        init_seed: seed of the weight initialization; runs with equal seeds start from equal weights.
        feedback_seed: seed of random feedback; ``init_seed + 1`` if unset.
    """

    def __init__(
        self,
        layer_sizes: list[int],
        nonlinearities: list[str],
        propagator: str = "BP",
        *,
        alpha: float | None = None,
        feedback_init: str | None = None,
        feedback_scale: float | None = None,
        feedback_gain: float | None = None,
        ssa_target: float | None = None,
        dt: float | None = None,
        steps: int | None = None,
        nonlinear_controller: bool | None = None,
        expanding_controller: bool | None = None,
        method: str | None = None,
        max_delta_norm: float | None = None,
        loss: str = "mse",
        reduction: str = "mean",
        optimizer: str = "sgd",
        lr: float = 1e-2,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        fixed_norm_updates: bool = False,
        gradient_clip_val: float | None = None,
        update_batch_size: int | None = None,
        online_threads: int | None = 1,
        check_finite: bool = True,
        bias: bool = True,
        weight_init: str = "uniform",
        weight_scale: float = 0.01,
        init_seed: int = 0,
        feedback_seed: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        _check_training_options(loss, reduction, optimizer, lr, momentum, weight_decay, gradient_clip_val)
        if update_batch_size is not None and update_batch_size < 1:
            raise ValueError(f"update_batch_size must be >= 1 or null, got {update_batch_size}")
        if online_threads is not None and (not isinstance(online_threads, int) or online_threads < 1):
            raise ValueError(f"online_threads must be >= 1 or null (keep PyTorch's thread count), got {online_threads}")

        self.network = FeedforwardNetwork(
            layer_sizes,
            nonlinearities,
            bias=bias,
            weight_init=weight_init,
            weight_scale=weight_scale,
            generator=torch.Generator().manual_seed(init_seed),
        )
        options = {
            "alpha": alpha,
            "feedback_init": feedback_init,
            "feedback_scale": feedback_scale,
            "feedback_gain": feedback_gain,
            "ssa_target": ssa_target,
            "dt": dt,
            "steps": steps,
            "nonlinear_controller": nonlinear_controller,
            "expanding_controller": expanding_controller,
            "method": method,
            "max_delta_norm": max_delta_norm,
        }
        self.propagator: ErrorPropagator = build_propagator(propagator, layer_sizes, options)
        feedback_generator = torch.Generator().manual_seed(init_seed + 1 if feedback_seed is None else feedback_seed)
        self.propagator.reset_feedback(self.network.weights, feedback_generator)

        self.classification = loss == "cross_entropy"
        # Plain running sums: a torchmetrics state reset inside validation's inference mode would
        # become an inference tensor that training could no longer update in place.
        self._train_loss_sum = 0.0
        self._train_loss_count = 0
        self.val_loss = torchmetrics.MeanMetric()
        self.test_loss = torchmetrics.MeanMetric()
        if self.classification:
            self.val_accuracy = torchmetrics.classification.MulticlassAccuracy(num_classes=layer_sizes[-1], average="micro")
            self.test_accuracy = torchmetrics.classification.MulticlassAccuracy(num_classes=layer_sizes[-1], average="micro")

        self.keep_step_record = False
        self.last_step: StepRecord | None = None
        self.updates_done = 0

    def forward(self, x: Tensor) -> Tensor:
        """Return the network output (logits for classification) for inputs ``(N, d_0)``."""
        return self.network(x)

    def propagate(self, x: Tensor, target: Tensor) -> tuple[list[Tensor], list[Tensor], ForwardCache, Tensor]:
        """Run the forward pass and the configured propagator on one batch.

        Returns:
            ``(pre_activations, deltas, cache, losses)``: ``[a_1, …, a_L]`` still attached to their own
            layer's parameters, the errors ``[δ_1, …, δ_L]``, the forward cache and per-sample losses.
        """
        pre_activations, cache = self.network.forward_for_training(x)
        delta_out, losses = output_error(self.hparams.loss, cache.pre_activations[-1], target, self.network.nonlinearities[-1])
        deltas = self.propagator(self.network.weights, cache, delta_out)
        return pre_activations, deltas, cache, losses

    def on_fit_start(self) -> None:
        if self.hparams.update_batch_size is not None and self.trainer.world_size > 1:
            raise ValueError(
                f"update_batch_size={self.hparams.update_batch_size} splits each batch into sequential updates, but "
                "DDP synchronizes one backward pass per batch; set update_batch_size to null for multi-device training"
            )

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, target = batch
        optimizer = self.optimizers()
        size = self.hparams.update_batch_size or x.shape[0]
        hooks = [callback for callback in self.trainer.callbacks if hasattr(callback, "on_weight_update")]

        # Several sequential updates per Lightning step keep online learning exact while paying
        # Lightning's per-step overhead once per loaded batch instead of once per example.
        # Without DDP or a mixed-precision scaler, the surrogate's backward pass only computes
        # delta_l h_(l-1)^T, which is cheaper to write directly.
        direct = self.hparams.update_batch_size is not None and type(self.trainer.precision_plugin) in _PLAIN_PRECISION
        threads = self.hparams.online_threads if size < x.shape[0] and x.device.type == "cpu" else None
        losses = []
        with _intra_op_threads(threads):
            for start in range(0, x.shape[0], size):
                chunk = (x[start : start + size], target[start : start + size])
                losses.append(self.update(*chunk, optimizer, self.manual_backward, direct_gradients=direct))
                for callback in hooks:
                    callback.on_weight_update(self.trainer, self)
        losses = torch.cat(losses)

        loss = losses.mean()
        self._train_loss_sum += float(losses.detach().sum())
        self._train_loss_count += losses.numel()
        # Lightning's self.log costs about a millisecond, which would dominate online training, so
        # the per-step value is logged only every log_every_n_steps and the epoch mean at the end.
        if self.trainer.log_every_n_steps and batch_idx % self.trainer.log_every_n_steps == 0:
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, batch_size=x.shape[0])
        return loss

    def update(
        self,
        x: Tensor,
        target: Tensor,
        optimizer: torch.optim.Optimizer,
        backward: Callable[[Tensor], None] | None = None,
        *,
        direct_gradients: bool = False,
    ) -> Tensor:
        """Apply one weight update from the batch ``(x, target)`` and return its per-sample losses.

        The update of Eq. 2 (Podlaski & Machens 2020), ``ΔW_l ∝ −δ_l h_{l-1}ᵀ`` and ``Δb_l ∝ −δ_l``,
        reaches the optimizer as the gradients of the surrogate loss ``Σ_l ⟨a_l, δ_l⟩`` with every
        layer input detached.

        Args:
            x: inputs ``(N, d_0)``.
            target: targets ``(N, d_L)`` or class indices ``(N,)``.
            optimizer: the optimizer that applies the update.
            backward: how to back-propagate the surrogate loss; ``manual_backward`` inside a
                Trainer (so DDP synchronizes the update), ``Tensor.backward`` if ``None``.
            direct_gradients: write the surrogate's gradients ``δ_lᵀ h_{l-1}`` and ``Σ_n δ_l``
                into ``.grad`` directly instead of calling ``backward`` (single process, full
                precision only).
        """
        weights_before = [w.detach().clone() for w in self.network.weights] if self.keep_step_record else []

        with torch.no_grad() if direct_gradients else contextlib.nullcontext():
            pre_activations, deltas, cache, losses = self.propagate(x, target)
        if self.hparams.check_finite:
            self._check_finite(deltas, losses)

        scale = 1.0 / x.shape[0] if self.hparams.reduction == "mean" else 1.0
        if direct_gradients:
            self._write_gradients(cache, deltas, scale)  # overwrites every gradient, no zeroing needed
        else:
            optimizer.zero_grad()
            surrogate = sum((a * delta).sum() for a, delta in zip(pre_activations, deltas)) * scale
            (backward or Tensor.backward)(surrogate)
        if self.hparams.fixed_norm_updates:
            self._normalize_updates()
        if self.hparams.gradient_clip_val is not None:
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.hparams.gradient_clip_val)
        optimizer.step()
        self.updates_done += 1
        if self.hparams.check_finite:
            self._check_finite_weights()

        if self.keep_step_record:
            self.last_step = StepRecord(weights_before, cache, deltas)
        return losses

    def _write_gradients(self, cache: ForwardCache, deltas: list[Tensor], scale: float) -> None:
        """Set ``.grad`` to the gradients the surrogate loss would back-propagate.

        For ``a_l = W_l h_{l-1} + b_l`` with ``h_{l-1}`` detached, the surrogate ``scale · Σ ⟨a_l, δ_l⟩``
        has ``∂/∂W_l = scale · δ_lᵀ h_{l-1}`` (shape ``(d_l, d_{l-1})``) and ``∂/∂b_l = scale · Σ_n δ_l``.
        """
        for layer, h, delta in zip(self.network.layers, cache.inputs, deltas):
            grad_a = delta * scale if scale != 1.0 else delta
            # Overwrite the previous update's buffers: allocating a fresh gradient for a large
            # layer after every example costs more than computing it.
            _write(layer.weight, torch.matmul, grad_a.T, h)
            if layer.bias is not None:
                _write(layer.bias, torch.sum, grad_a, 0)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The running loss of a partly finished epoch, so a resumed run logs the same epoch mean.
        checkpoint["train_loss_running"] = (self._train_loss_sum, self._train_loss_count)
        checkpoint["updates_done"] = self.updates_done

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._train_loss_sum, self._train_loss_count = checkpoint.get("train_loss_running", (0.0, 0))
        self.updates_done = int(checkpoint.get("updates_done", 0))

    def on_train_epoch_end(self) -> None:
        if self._train_loss_count:
            self.log("train/loss", self._train_loss_sum / self._train_loss_count, sync_dist=True)
        self._train_loss_sum, self._train_loss_count = 0.0, 0

    def _diverged(self, what: str) -> DivergenceError:
        rule = self.propagator.name
        message = (
            f"{rule} diverged at update {self.updates_done + 1}: {what} contains NaN or Inf; lower the learning "
            f"rate{', raise the leak alpha' if hasattr(self.propagator, 'alpha') else ''} or set max_delta_norm"
        )
        logger.error(message)
        return DivergenceError(message)

    def _check_finite(self, deltas: list[Tensor], losses: Tensor) -> None:
        if _all_finite([*deltas, losses]):
            return
        # The errors come first: they name the layer where the propagation broke down.
        for layer, delta in enumerate(deltas, start=1):
            if not bool(torch.isfinite(delta).all()):
                raise self._diverged(f"the error δ_{layer} of layer {layer}")
        if not bool(torch.isfinite(losses).all()):
            raise self._diverged("the loss")

    def _check_finite_weights(self) -> None:
        weights = self.network.weights
        if _all_finite(weights):
            return
        for layer, weight in enumerate(weights, start=1):
            if not bool(torch.isfinite(weight).all()):
                raise self._diverged(f"the weight W_{layer} of layer {layer}")

    def _normalize_updates(self) -> None:
        for parameter in self.network.parameters():
            if parameter.grad is not None:
                norm = torch.linalg.vector_norm(parameter.grad)
                if norm > 0:
                    parameter.grad.div_(norm)

    def _evaluate(self, batch: tuple[Tensor, Tensor], split: str) -> None:
        x, target = batch
        output = self.network(x)
        losses = per_sample_loss(self.hparams.loss, output, target)
        loss_metric = self.val_loss if split == "val" else self.test_loss
        loss_metric.update(losses)
        self.log(f"{split}/loss", loss_metric, on_epoch=True, batch_size=x.shape[0])
        if self.classification:
            accuracy = self.val_accuracy if split == "val" else self.test_accuracy
            accuracy.update(output, target)
            self.log(f"{split}/accuracy", accuracy, on_epoch=True, batch_size=x.shape[0])

    def _thaw_metric_states(self) -> None:
        # A metric reset inside trainer.validate() runs under torch.inference_mode, so its state
        # tensors become inference tensors that a later validation inside fit (no_grad only) cannot
        # update in place; cloning them outside inference mode makes them ordinary tensors again.
        if torch.is_inference_mode_enabled():
            return
        for metric in self.modules():
            if isinstance(metric, torchmetrics.Metric):
                for name in metric._defaults:
                    state = getattr(metric, name)
                    if isinstance(state, Tensor) and state.is_inference():
                        setattr(metric, name, state.clone())

    def on_validation_epoch_start(self) -> None:
        self._thaw_metric_states()

    def on_test_epoch_start(self) -> None:
        self._thaw_metric_states()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_validation_epoch_end(self) -> None:
        if self.classification:
            self.log("val/error", 1.0 - self.val_accuracy.compute())

    def on_test_epoch_end(self) -> None:
        if self.classification:
            self.log("test/error", 1.0 - self.test_accuracy.compute())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = list(self.network.parameters())
        if self.hparams.optimizer == "sgd":
            options: dict[str, Any] = {"momentum": self.hparams.momentum}
            optimizer_class: type[torch.optim.Optimizer] = torch.optim.SGD
        else:
            options, optimizer_class = {}, torch.optim.Adam
        options.update(lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        # The fused step applies the same update rule in one pass over each parameter. The default
        # step allocates a parameter-sized temporary for weight decay, which in online training of
        # a 784 x 1000 layer costs more than the rest of the update.
        try:
            return optimizer_class(params, fused=True, **options)
        except (RuntimeError, ValueError):
            return optimizer_class(params, **options)


def _write(parameter: Tensor, operation: Callable[..., Tensor], *arguments: Any) -> None:
    """Store ``operation(*arguments)`` as ``parameter.grad``, reusing its buffer when there is one."""
    grad = parameter.grad
    if grad is not None and grad.shape == parameter.shape and grad.is_contiguous():
        operation(*arguments, out=grad)
    else:
        parameter.grad = operation(*arguments)


def _all_finite(tensors: list[Tensor]) -> bool:
    """Return whether every tensor holds only finite values, with one synchronization.

    A sum is finite when all its terms are, so one ``isfinite`` over the per-tensor sums replaces a
    check per tensor. A sum can also overflow from finite terms; the callers then check each
    tensor element-wise before they report anything.
    """
    sums = torch.stack([tensor.detach().sum() for tensor in tensors])
    return bool(torch.isfinite(sums).all())


def _check_training_options(
    loss: str,
    reduction: str,
    optimizer: str,
    lr: float,
    momentum: float,
    weight_decay: float,
    gradient_clip_val: float | None,
) -> None:
    """Raise ``ValueError`` naming the option, the value and the valid range."""
    check_loss(loss)
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; valid choices are {list(REDUCTIONS)}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; valid choices are {list(OPTIMIZERS)}")
    if not lr > 0:
        raise ValueError(f"lr (learning rate) must be > 0, got {lr}")
    if not momentum >= 0:
        raise ValueError(f"momentum must be >= 0, got {momentum}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if gradient_clip_val is not None and not gradient_clip_val > 0:
        raise ValueError(f"gradient_clip_val must be > 0 or null, got {gradient_clip_val}")


@contextlib.contextmanager
def _intra_op_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` PyTorch intra-op threads (unchanged if ``None``), then restore."""
    previous = torch.get_num_threads()
    if count is None or count == previous:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
