"""Synthetic regression tasks of Podlaski & Machens 2020, Sections 7.7.2-7.7.3 (after Lillicrap et al. 2016).

Each task draws a fixed training set of ``num_samples`` examples. Training is online (batch size 1
by default) in a seeded random order, so one epoch shows every example once, as in the paper's
experiments. The same ``seed`` gives the same data, the same teacher and the same order to every run.
"""

from __future__ import annotations

from abc import abstractmethod

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from dilightning.data.sampling import ResumableDataModuleMixin


class RegressionDataModule(ResumableDataModuleMixin, pl.LightningDataModule):
    """Base for the synthetic regression tasks: a training set and an independent validation set.

    Args:
        num_samples: size of the training set (one epoch of online training).
        val_samples: size of a separate validation set drawn from the same distribution.
        batch_size: examples per update (1 for online training).
        seed: seed of the data, the teacher and the shuffling order.
    """

    def __init__(self, num_samples: int = 2000, val_samples: int = 500, batch_size: int = 1, seed: int = 0) -> None:
        super().__init__()
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if val_samples < 0:
            raise ValueError(f"val_samples must be >= 0, got {val_samples}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.save_hyperparameters()
        self.num_samples = num_samples
        self.val_samples = val_samples
        self.batch_size = batch_size
        self.seed = seed
        self._train: tuple[Tensor, Tensor] | None = None
        self._val: tuple[Tensor, Tensor] | None = None

    @abstractmethod
    def draw_teacher(self, generator: torch.Generator) -> object:
        """Draw the task's ground-truth mapping."""

    @abstractmethod
    def teach(self, teacher: object, inputs: Tensor) -> Tensor:
        """Return the targets of ``inputs`` ``(N, d_0)`` under ``teacher``."""

    @property
    @abstractmethod
    def input_size(self) -> int:
        """Dimension ``d_0`` of the inputs."""

    def setup(self, stage: str | None = None) -> None:
        if self._train is not None:
            return
        generator = torch.Generator().manual_seed(self.seed)
        teacher = self.draw_teacher(generator)
        train_inputs = torch.randn(self.num_samples, self.input_size, generator=generator)
        val_inputs = torch.randn(self.val_samples, self.input_size, generator=generator)
        self._train = (train_inputs, self.teach(teacher, train_inputs))
        self._val = (val_inputs, self.teach(teacher, val_inputs))

    def full_training_set(self) -> tuple[Tensor, Tensor]:
        """Return all training inputs ``(N, d_0)`` and targets ``(N, d_L)``."""
        self.setup()
        assert self._train is not None
        return self._train

    def train_dataloader(self) -> DataLoader:
        inputs, targets = self.full_training_set()
        sampler = self.training_sampler(inputs.shape[0])
        return DataLoader(TensorDataset(inputs, targets), batch_size=self.batch_size, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        assert self._val is not None
        return DataLoader(TensorDataset(*self._val), batch_size=max(self.val_samples, 1))


def _uniform(shape: tuple[int, ...], scale: float, generator: torch.Generator) -> Tensor:
    return (2.0 * torch.rand(shape, generator=generator) - 1.0) * scale


class LinearRegressionDataModule(RegressionDataModule):
    """Linear regression: ``x ~ N(0, I)``, ``t = T x`` with ``T ~ U(−1, 1)`` and no bias.

    Podlaski & Machens 2020, Section 7.7.2 (30 inputs, 10 outputs).
    """

    def __init__(
        self,
        input_size: int = 30,
        output_size: int = 10,
        num_samples: int = 2000,
        val_samples: int = 500,
        batch_size: int = 1,
        seed: int = 0,
    ) -> None:
        self._input_size = input_size
        self.output_size = output_size
        super().__init__(num_samples, val_samples, batch_size, seed)

    @property
    def input_size(self) -> int:
        return self._input_size

    def draw_teacher(self, generator: torch.Generator) -> Tensor:
        return _uniform((self.output_size, self._input_size), 1.0, generator)

    def teach(self, teacher: object, inputs: Tensor) -> Tensor:
        assert isinstance(teacher, Tensor)
        return inputs @ teacher.T


class NonlinearRegressionDataModule(RegressionDataModule):
    """Nonlinear regression with a random teacher network of the student's architecture.

    Podlaski & Machens 2020, Section 7.7.3: a 30-20-10-10 tanh-tanh-linear teacher whose weights
    and biases are drawn from ``U(−r, r)`` with ``r = 0.01``; inputs ``x ~ N(0, I)``.

    Args:
        teacher_sizes: teacher architecture ``[d_0, …, d_L]``.
        teacher_scale: ``r`` of the teacher's uniform weights and biases.
        Other arguments as for :class:`RegressionDataModule`.
    """

    def __init__(
        self,
        teacher_sizes: list[int] | None = None,
        teacher_scale: float = 0.01,
        num_samples: int = 12000,
        val_samples: int = 500,
        batch_size: int = 1,
        seed: int = 0,
    ) -> None:
        self.teacher_sizes = list(teacher_sizes) if teacher_sizes is not None else [30, 20, 10, 10]
        if len(self.teacher_sizes) < 2:
            raise ValueError(f"teacher_sizes must list at least two sizes, got {self.teacher_sizes}")
        self.teacher_scale = teacher_scale
        super().__init__(num_samples, val_samples, batch_size, seed)

    @property
    def input_size(self) -> int:
        return self.teacher_sizes[0]

    def draw_teacher(self, generator: torch.Generator) -> list[tuple[Tensor, Tensor]]:
        sizes = self.teacher_sizes
        layers = []
        for d_in, d_out in zip(sizes[:-1], sizes[1:]):
            weight = _uniform((d_out, d_in), self.teacher_scale, generator)
            bias = _uniform((d_out,), self.teacher_scale, generator)
            layers.append((weight, bias))
        return layers

    def teach(self, teacher: object, inputs: Tensor) -> Tensor:
        assert isinstance(teacher, list)
        h = inputs
        for index, (weight, bias) in enumerate(teacher):
            a = h @ weight.T + bias
            h = torch.tanh(a) if index < len(teacher) - 1 else a
        return h
