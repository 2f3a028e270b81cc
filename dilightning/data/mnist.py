"""MNIST (and FashionMNIST) for classification and autoencoding, with the paper's preprocessing.

Podlaski & Machens 2020, Sections 7.7.4-7.7.5: for classification, each pixel's training mean is
subtracted and the result divided by the standard deviation over all training pixels; for the
autoencoder, pixels are scaled to ``[0, 1]`` and not centred. The images are read with
``torchvision.datasets`` from ``<data_dir>/MNIST/raw`` (or ``FashionMNIST/raw``), kept in memory as
float tensors, and served in a seeded random order.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
import torchvision
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from dilightning.data.sampling import ResumableDataModuleMixin

DATASETS = {"mnist": torchvision.datasets.MNIST, "fashion_mnist": torchvision.datasets.FashionMNIST}
TASKS = ("classification", "autoencoder")
EVALUATION_SPLITS = ("test", "train")


def load_images(data_dir: str | Path, dataset: str, *, train: bool, download: bool) -> tuple[Tensor, Tensor]:
    """Return the raw images ``(N, 28, 28)`` (uint8) and labels ``(N,)`` of one split.

    Raises ``FileNotFoundError`` naming the expected folder when the files are missing.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; valid choices are {sorted(DATASETS)}")
    cls = DATASETS[dataset]
    try:
        data = cls(root=str(data_dir), train=train, download=download)
    except RuntimeError as error:
        folder = Path(data_dir) / cls.__name__ / "raw"
        raise FileNotFoundError(
            f"{cls.__name__} files not found in {folder} (expected train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            f"t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, optionally gzipped); fetch them with "
            f"download=True (--download for python -m dilightning.reproduce, --data.init_args.download true for "
            f"dilightning fit), or point data_dir at the folder that contains {cls.__name__}/"
        ) from error
    return data.data, data.targets


class MNISTDataModule(ResumableDataModuleMixin, pl.LightningDataModule):
    """MNIST-style images as flat vectors, with the preprocessing of the paper's two tasks.

    Args:
        data_dir: folder that contains ``MNIST/raw`` (torchvision's layout).
        dataset: ``"mnist"`` or ``"fashion_mnist"``.
        task: ``"classification"`` (targets are labels, inputs standardized per pixel) or
            ``"autoencoder"`` (targets are the inputs, pixels in ``[0, 1]``).
        batch_size: examples per loaded batch (see ``update_batch_size`` of the model for online learning).
        evaluate_on: split used for validation, ``"test"`` (classification in the paper) or
            ``"train"`` (the autoencoder's training error).
        train_subset: use only the first this many training images (``None``: all 60 000).
        eval_subset: use only the first this many images of the evaluation split.
        download: download missing files (off by default; tests and CI never download).
        seed: seed of the shuffling order.
    """

    def __init__(
        self,
        data_dir: str = "data",
        dataset: str = "mnist",
        task: str = "classification",
        batch_size: int = 100,
        evaluate_on: str = "test",
        train_subset: int | None = None,
        eval_subset: int | None = None,
        download: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; valid choices are {sorted(DATASETS)}")
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; valid choices are {list(TASKS)}")
        if evaluate_on not in EVALUATION_SPLITS:
            raise ValueError(f"unknown evaluate_on {evaluate_on!r}; valid choices are {list(EVALUATION_SPLITS)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for name, value in (("train_subset", train_subset), ("eval_subset", eval_subset)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or null, got {value}")
        self.save_hyperparameters()
        self.data_dir = data_dir
        self.dataset = dataset
        self.task = task
        self.batch_size = batch_size
        self.evaluate_on = evaluate_on
        self.train_subset = train_subset
        self.eval_subset = eval_subset
        self.download = download
        self.seed = seed
        self._train: tuple[Tensor, Tensor] | None = None
        self._eval: tuple[Tensor, Tensor] | None = None
        self._eval_labels: Tensor | None = None
        self.pixel_mean: Tensor | None = None
        self.pixel_std: Tensor | None = None

    def prepare_data(self) -> None:
        if self.download:
            for train in (True, False):
                load_images(self.data_dir, self.dataset, train=train, download=True)

    def _preprocess(self, images: Tensor) -> Tensor:
        flat = images.reshape(images.shape[0], -1).to(torch.float32)
        if self.task == "autoencoder":
            return flat / 255.0
        assert self.pixel_mean is not None and self.pixel_std is not None
        return (flat - self.pixel_mean) / self.pixel_std

    def _targets(self, inputs: Tensor, labels: Tensor) -> Tensor:
        return inputs if self.task == "autoencoder" else labels.to(torch.long)

    def setup(self, stage: str | None = None) -> None:
        if self._train is not None:
            return
        train_images, train_labels = load_images(self.data_dir, self.dataset, train=True, download=False)
        # The statistics always come from the full training set, whatever subset is trained on.
        flat = train_images.reshape(train_images.shape[0], -1).to(torch.float64)
        self.pixel_mean = flat.mean(0).to(torch.float32)
        self.pixel_std = (flat - flat.mean(0)).std(unbiased=False).to(torch.float32)

        train_images, train_labels = train_images[: self.train_subset], train_labels[: self.train_subset]
        inputs = self._preprocess(train_images)
        self._train = (inputs, self._targets(inputs, train_labels))

        if self.evaluate_on == "test":
            images, labels = load_images(self.data_dir, self.dataset, train=False, download=False)
        else:
            images, labels = train_images, train_labels
        images, labels = images[: self.eval_subset], labels[: self.eval_subset]
        eval_inputs = self._preprocess(images)
        self._eval = (eval_inputs, self._targets(eval_inputs, labels))
        self._eval_labels = labels.to(torch.long)

    def full_training_set(self) -> tuple[Tensor, Tensor]:
        """Return the preprocessed training inputs ``(N, 784)`` and targets."""
        self.setup()
        assert self._train is not None
        return self._train

    def evaluation_set(self) -> tuple[Tensor, Tensor]:
        """Return the preprocessed evaluation inputs and targets (the ``evaluate_on`` split)."""
        self.setup()
        assert self._eval is not None
        return self._eval

    def evaluation_labels(self) -> Tensor:
        """Return the digit labels ``(N,)`` of the evaluation split (also for the autoencoder)."""
        self.setup()
        assert self._eval_labels is not None
        return self._eval_labels

    def train_dataloader(self) -> DataLoader:
        dataset = TensorDataset(*self.full_training_set())
        return DataLoader(dataset, batch_size=self.batch_size, sampler=self.training_sampler(len(dataset)))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(*self.evaluation_set()), batch_size=1000)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
