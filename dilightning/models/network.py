"""Feedforward network ``h_l = g_l(W_l h_{l-1} + b_l)`` that records what error propagation needs.

Podlaski & Machens 2020, Eq. 1. The forward pass for training detaches each layer's input, so the
graph of layer ``l`` only links ``a_l`` to ``W_l`` and ``b_l``. The weight update therefore comes
from the propagated errors alone (Eq. 2), whatever rule produced them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dilightning.inversion.nonlinearities import Nonlinearity, get_nonlinearity
from dilightning.propagators import ForwardCache

WEIGHT_INITS = ("uniform", "orthogonal")
OUTPUT_ONLY_NONLINEARITIES = ("softmax",)


def resolve_nonlinearities(names: Sequence[str], num_layers: int) -> list[Nonlinearity]:
    """Return one :class:`Nonlinearity` per layer from ``names`` (``"softmax"`` allowed last only).

    The output softmax is part of the cross-entropy loss, so the network itself keeps ``a_L``
    linear and the last entry resolves to ``"linear"``.
    """
    names = list(names)
    if len(names) != num_layers:
        raise ValueError(
            f"nonlinearities has {len(names)} entries but layer_sizes defines {num_layers} layers; "
            f"give one per layer, e.g. {['tanh'] * (num_layers - 1) + ['linear']}"
        )
    resolved = []
    for index, name in enumerate(names):
        if name in OUTPUT_ONLY_NONLINEARITIES:
            if index != num_layers - 1:
                raise ValueError(f"nonlinearities[{index}]={name!r} is only valid for the output layer")
            resolved.append(get_nonlinearity("linear"))
        else:
            resolved.append(get_nonlinearity(name, argument=f"nonlinearities[{index}]"))
    return resolved


class FeedforwardNetwork(nn.Module):
    """Fully connected network with per-layer nonlinearities.

    Args:
        layer_sizes: ``[d_0, …, d_L]``.
        nonlinearities: ``L`` names such as ``["tanh", "linear"]``; ``"softmax"`` may close a
            classifier (the loss applies it).
        bias: whether layers have biases ``b_l``.
        weight_init: ``"uniform"`` (``W ~ U(−r, r)``, biases zero, as in Podlaski & Machens 2020,
            Section 7.7) or ``"orthogonal"`` (random orthogonal ``W``, Saxe et al. 2013).
        weight_scale: ``r`` for the uniform initialization.
        generator: random source for the initialization, so runs can share initial weights.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        nonlinearities: Sequence[str],
        *,
        bias: bool = True,
        weight_init: str = "uniform",
        weight_scale: float = 0.01,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        sizes = [int(size) for size in layer_sizes]
        if len(sizes) < 2 or any(size < 1 for size in sizes):
            raise ValueError(f"layer_sizes must list at least two positive sizes [d_0, …, d_L], got {list(layer_sizes)}")
        if weight_init not in WEIGHT_INITS:
            raise ValueError(f"unknown weight_init {weight_init!r}; valid choices are {list(WEIGHT_INITS)}")
        if not weight_scale > 0:
            raise ValueError(f"weight_scale must be > 0, got {weight_scale}")
        self.layer_sizes = sizes
        self.nonlinearity_names = list(nonlinearities)
        self.nonlinearities = resolve_nonlinearities(nonlinearities, len(sizes) - 1)
        self.layers = nn.ModuleList(nn.Linear(d_in, d_out, bias=bias) for d_in, d_out in zip(sizes[:-1], sizes[1:]))
        self.reset_parameters(weight_init, weight_scale, generator)

    def reset_parameters(self, weight_init: str, weight_scale: float, generator: torch.Generator | None) -> None:
        """Draw the weights (layer by layer, in order) and zero the biases."""
        with torch.no_grad():
            for layer in self.layers:
                if weight_init == "uniform":
                    nn.init.uniform_(layer.weight, -weight_scale, weight_scale, generator=generator)
                else:
                    nn.init.orthogonal_(layer.weight, generator=generator)
                if layer.bias is not None:
                    layer.bias.zero_()

    @property
    def weights(self) -> list[Tensor]:
        """``[W_1, …, W_L]``, ``W_l`` of shape ``(d_l, d_{l-1})``."""
        return [layer.weight for layer in self.layers]

    def forward(self, x: Tensor) -> Tensor:
        """Return the network output for ``x`` of shape ``(N, d_0)``; logits for a softmax classifier."""
        h = x
        for layer, g in zip(self.layers, self.nonlinearities):
            h = g(layer(h))
        return h

    def activations(self, x: Tensor) -> list[Tensor]:
        """Return every layer's activity ``[h_1, …, h_L]`` for inputs ``(N, d_0)`` (``h_L`` as in :meth:`forward`)."""
        outputs, h = [], x
        for layer, g in zip(self.layers, self.nonlinearities):
            h = g(layer(h))
            outputs.append(h)
        return outputs

    def forward_for_training(self, x: Tensor) -> tuple[list[Tensor], ForwardCache]:
        """Run the forward pass with every layer input detached.

        Returns:
            ``pre_activations`` ``[a_1, …, a_L]`` that still require grad through ``W_l`` and ``b_l``
            only, and a detached :class:`ForwardCache` for the propagator.
        """
        inputs, pre_activations = [], []
        h = x.detach()
        for layer, g in zip(self.layers, self.nonlinearities):
            inputs.append(h)
            a = layer(h)
            pre_activations.append(a)
            h = g(a).detach()
        cache = ForwardCache(inputs, [a.detach() for a in pre_activations], list(self.nonlinearities))
        return pre_activations, cache
