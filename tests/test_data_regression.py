"""Regression DataModules: the generating process of Sections 7.7.2-7.7.3 and a seeded order."""

from __future__ import annotations

import numpy as np
import torch

from dilightning.data import LinearRegressionDataModule, NonlinearRegressionDataModule


def test_linear_targets_are_linear_in_inputs():
    data = LinearRegressionDataModule(num_samples=300, seed=5)

    inputs, targets = data.full_training_set()

    assert inputs.shape == (300, 30)
    assert targets.shape == (300, 10)
    solution, residuals, _, _ = np.linalg.lstsq(inputs.double().numpy(), targets.double().numpy(), rcond=None)
    assert residuals.max() < 1e-8  # t = T x with no bias
    assert np.abs(solution).max() <= 1.0 + 1e-5  # T ~ U(-1, 1)
    assert np.abs(solution).max() > 0.9


def test_linear_inputs_are_standard_normal():
    inputs, _ = LinearRegressionDataModule(num_samples=20000, seed=1).full_training_set()

    assert abs(float(inputs.mean())) < 0.01
    assert abs(float(inputs.std()) - 1.0) < 0.01


def test_nonlinear_teacher_matches_generating_process():
    data = NonlinearRegressionDataModule(num_samples=50, seed=2)

    inputs, targets = data.full_training_set()

    # Redraw the teacher from the same seed: W_l then b_l for each layer, all U(-0.01, 0.01), then x.
    generator = torch.Generator().manual_seed(2)
    layers = []
    for d_in, d_out in [(30, 20), (20, 10), (10, 10)]:
        weight = (2 * torch.rand(d_out, d_in, generator=generator) - 1) * 0.01
        bias = (2 * torch.rand(d_out, generator=generator) - 1) * 0.01
        layers.append((weight, bias))
    x = torch.randn(50, 30, generator=generator)
    h = torch.tanh(x @ layers[0][0].T + layers[0][1])
    h = torch.tanh(h @ layers[1][0].T + layers[1][1])
    expected = h @ layers[2][0].T + layers[2][1]
    assert torch.equal(inputs, x)
    torch.testing.assert_close(targets, expected)


def test_same_seed_same_data_and_order():
    first = LinearRegressionDataModule(num_samples=50, seed=3)
    second = LinearRegressionDataModule(num_samples=50, seed=3)

    first_batches = [x for x, _ in first.train_dataloader()]
    second_batches = [x for x, _ in second.train_dataloader()]

    assert all(torch.equal(a, b) for a, b in zip(first_batches, second_batches))
    assert len(first_batches) == 50  # online: batch size 1, every example once per epoch


def test_order_is_a_permutation_of_the_training_set():
    data = LinearRegressionDataModule(num_samples=40, seed=4)
    inputs, _ = data.full_training_set()

    seen = torch.cat([x for x, _ in data.train_dataloader()])

    assert not torch.equal(seen, inputs)  # shuffled
    assert torch.equal(seen[seen[:, 0].argsort()], inputs[inputs[:, 0].argsort()])


def test_different_seeds_differ():
    first, _ = LinearRegressionDataModule(num_samples=10, seed=0).full_training_set()
    second, _ = LinearRegressionDataModule(num_samples=10, seed=1).full_training_set()

    assert not torch.equal(first, second)
