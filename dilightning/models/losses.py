"""Per-sample losses and the output error ``δ_L = ∂ℓ/∂a_L`` they define."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dilightning.inversion.nonlinearities import Nonlinearity

LOSSES = ("mse", "cross_entropy")


def check_loss(loss: str) -> str:
    """Return ``loss`` after checking that it names a supported loss."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid choices are {list(LOSSES)}")
    return loss


def per_sample_loss(loss: str, output: Tensor, target: Tensor) -> Tensor:
    """Return the loss of every sample, shape ``(N,)``.

    ``"mse"`` is ``½ ‖y − t‖²`` (so that ``δ_L = y − t`` for a linear output, as in Podlaski &
    Machens 2020, Section 2.1); ``"cross_entropy"`` takes logits and integer class targets.
    """
    if loss == "mse":
        return 0.5 * ((output - target) ** 2).sum(dim=-1)
    return F.cross_entropy(output, target, reduction="none")


def output_error(loss: str, output_pre_activation: Tensor, target: Tensor, nonlinearity: Nonlinearity) -> tuple[Tensor, Tensor]:
    """Return ``(δ_L, ℓ)``: the per-sample error ``∂ℓ_n/∂a_L`` ``(N, d_L)`` and the losses ``(N,)``.

    ``δ_L`` comes from autograd through the output nonlinearity and the loss, so any supported
    pairing is exact (for softmax with cross-entropy it is ``softmax(a_L) − onehot(t)``). The
    squared error of a linear output, ``δ_L = a_L − t``, is written out: autograd would return the
    same numbers at several times the cost, which matters for online regression.
    """
    if loss == "mse" and nonlinearity.name == "linear":
        difference = output_pre_activation.detach() - target
        return difference, 0.5 * difference.square().sum(dim=-1)
    with torch.enable_grad():
        leaf = output_pre_activation.detach().requires_grad_(True)
        losses = per_sample_loss(loss, nonlinearity(leaf), target)
        (delta,) = torch.autograd.grad(losses.sum(), leaf)
    return delta, losses.detach()
