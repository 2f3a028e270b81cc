"""MNIST DataModule on the original IDX files: sizes, labels and the paper's preprocessing."""

from __future__ import annotations

import pytest
import torch

from dilightning.data import MNISTDataModule
from tests.conftest import MNIST_ROOT

requires_mnist = pytest.mark.skipif(
    not (MNIST_ROOT / "MNIST" / "raw").is_dir(), reason=f"MNIST files not found in {MNIST_ROOT / 'MNIST' / 'raw'}"
)
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def classification():
    data = MNISTDataModule(data_dir=str(MNIST_ROOT), task="classification")
    data.setup()
    return data


@requires_mnist
def test_sizes_and_label_counts(classification):
    inputs, labels = classification.full_training_set()
    test_inputs, test_labels = classification.evaluation_set()

    assert inputs.shape == (60000, 784)
    assert test_inputs.shape == (10000, 784)
    assert torch.bincount(labels).tolist() == TRAIN_COUNTS
    assert torch.bincount(test_labels).tolist() == TEST_COUNTS


@requires_mnist
def test_classification_preprocessing_statistics(classification):
    inputs, _ = classification.full_training_set()
    centred = inputs.double()

    assert centred.mean(0).abs().max() < 1e-5  # every pixel's training mean removed
    assert abs(float(centred.pow(2).mean().sqrt()) - 1.0) < 1e-5  # unit variance over all pixels
    assert abs(float(classification.pixel_mean.mean()) * 1 - 33.318) < 0.01  # MNIST's mean intensity (0-255)


@requires_mnist
def test_autoencoder_preprocessing():
    data = MNISTDataModule(data_dir=str(MNIST_ROOT), task="autoencoder", train_subset=500, evaluate_on="train")

    inputs, targets = data.full_training_set()

    assert inputs.min() == 0.0
    assert inputs.max() == 1.0
    assert torch.equal(inputs, targets)
    assert torch.equal(data.evaluation_set()[0], inputs)


@requires_mnist
def test_subsets_and_seeded_order():
    first = MNISTDataModule(data_dir=str(MNIST_ROOT), train_subset=50, eval_subset=20, batch_size=10, seed=1)
    second = MNISTDataModule(data_dir=str(MNIST_ROOT), train_subset=50, eval_subset=20, batch_size=10, seed=1)

    first_batches = [labels for _, labels in first.train_dataloader()]
    second_batches = [labels for _, labels in second.train_dataloader()]

    assert len(first_batches) == 5
    assert all(torch.equal(a, b) for a, b in zip(first_batches, second_batches))
    assert first.evaluation_set()[0].shape == (20, 784)


def test_missing_folder_names_location_and_fix(tmp_path):
    data = MNISTDataModule(data_dir=str(tmp_path))

    with pytest.raises(FileNotFoundError, match=r"MNIST files not found in .*MNIST/raw.*download=True"):
        data.setup()


def test_fashion_mnist_selectable(tmp_path):
    data = MNISTDataModule(data_dir=str(tmp_path), dataset="fashion_mnist")

    with pytest.raises(FileNotFoundError, match="FashionMNIST files not found in .*FashionMNIST/raw"):
        data.setup()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dataset": "kmnist"}, "unknown dataset 'kmnist'"),
        ({"task": "regression"}, "unknown task 'regression'"),
        ({"evaluate_on": "val"}, "unknown evaluate_on 'val'"),
        ({"train_subset": 0}, "train_subset must be >= 1"),
    ],
)
def test_invalid_options(options, message):
    with pytest.raises(ValueError, match=message):
        MNISTDataModule(**options)
