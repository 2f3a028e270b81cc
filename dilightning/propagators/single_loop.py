"""Single-loop dynamic inversion (SLDI): one feedback loop from the output to the first hidden layer.

Podlaski & Machens 2020, Section 4.1, Fig. 2c and Section 7.3. The nonlinear controller of Eqs.
S3-S5 is the default, as in the paper's experiments; the linearized form of Eqs. S12-S14 is an
option. SLDI also keeps per-layer feedback ``B_2 … B_L``: the loop feedback is built from them
(``B = −B_2 B_3`` for two hidden layers, as in the paper), and they define the sequential NDI errors
that SLDI is compared with.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from dilightning.inversion import max_real_eigenvalue, optimize_feedback_ssa, single_loop_inversion
from dilightning.propagators.base import ForwardCache
from dilightning.propagators.inversion_rules import _SimulatedInversion

logger = logging.getLogger(__name__)


class SLDI(_SimulatedInversion):
    """Single-loop DI: the output controller drives the first hidden layer through ``B`` (``(d_1, d_L)``).

    The loop feedback is the buffer ``feedback_loop``. It is initialized as
    ``B = (−1)^{k+1} B_2 ⋯ B_L`` for ``k = L − 1`` per-layer matrices (``B = −B_2 B_3`` for two hidden
    layers; ``−(W_L ⋯ W_2)ᵀ`` under Tr-Init), then stabilized by SSA descent for R-Init.
    """

    name: ClassVar[str] = "SLDI"
    default_nonlinear_controller: ClassVar[bool] = True

    def __init__(self, layer_sizes: Sequence[int], **kwargs: object) -> None:
        super().__init__(layer_sizes, **kwargs)
        self.register_buffer("feedback_loop", torch.zeros(self.layer_sizes[1], self.layer_sizes[-1]))

    def reset_feedback(self, weights: Sequence[Tensor], generator: torch.Generator | None = None) -> None:
        super().reset_feedback(weights, generator)
        if self.num_layers < 2:
            return
        product = self.feedback(1)
        for index in range(2, self.num_layers):
            product = product @ self.feedback(index)
        loop = product if (self.num_layers - 1) % 2 == 1 else -product
        if self.feedback_init == "random":
            loop = self._stabilize_loop(weights, loop)
        self.feedback_loop.copy_(loop)

    def _stabilize_loop(self, weights: Sequence[Tensor], loop: Tensor) -> Tensor:
        chain = [weight.detach() for weight in weights[1:]]
        return optimize_feedback_ssa(chain, loop, self.alpha, target=self.ssa_target)

    def feedback_matrices(self) -> dict[str, Tensor]:
        return {**super().feedback_matrices(), "loop": self.feedback_loop}

    def max_real_eigenvalues(self, weights: Sequence[Tensor]) -> dict[str, float]:
        """Return ``λmax`` of the whole loop's linearized dynamics under the key ``"loop"``."""
        chain = [weight.detach() for weight in weights[1:]]
        return {"loop": max_real_eigenvalue(chain, self.feedback_loop, self.alpha)}

    def restabilize(self, weights: Sequence[Tensor], eigenvalues: dict[str, float] | None = None) -> list[str]:
        eigenvalues = eigenvalues if eigenvalues is not None else self.max_real_eigenvalues(weights)
        if eigenvalues["loop"] < 0:
            return []
        self.feedback_loop.copy_(self._stabilize_loop(weights, self.feedback_loop))
        logger.info("re-stabilized the single-loop feedback (lambda_max was %.3g)", eigenvalues["loop"])
        self.restabilizations += 1
        return ["loop"]

    def hidden_errors(self, weights: Sequence[Tensor], cache: ForwardCache, output_error: Tensor) -> list[Tensor]:
        if self.num_layers < 2:
            return []
        if self.nonlinear_controller:
            return single_loop_inversion(
                weights[1:],
                self.feedback_loop,
                output_error,
                self.alpha,
                nonlinearities=cache.nonlinearities[:-1],
                dt=self.dt,
                steps=self.steps,
            )
        return single_loop_inversion(
            weights[1:],
            self.feedback_loop,
            output_error,
            self.alpha,
            nonlinearities="linear",
            derivatives=cache.derivatives,
            dt=self.dt,
            steps=self.steps,
        )

