"""DataModules: the synthetic regression tasks and MNIST."""

from dilightning.data.regression import LinearRegressionDataModule, NonlinearRegressionDataModule, RegressionDataModule

__all__ = ["LinearRegressionDataModule", "NonlinearRegressionDataModule", "RegressionDataModule"]
