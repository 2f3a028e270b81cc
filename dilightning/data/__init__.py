"""DataModules: the synthetic regression tasks and MNIST."""

from dilightning.data.mnist import MNISTDataModule
from dilightning.data.regression import LinearRegressionDataModule, NonlinearRegressionDataModule, RegressionDataModule

__all__ = ["LinearRegressionDataModule", "MNISTDataModule", "NonlinearRegressionDataModule", "RegressionDataModule"]
