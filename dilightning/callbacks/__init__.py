"""Callbacks that record training-set error, stability and alignment angles during training."""

from dilightning.callbacks.alignment import AlignmentMonitor
from dilightning.callbacks.series import SeriesCallback
from dilightning.callbacks.stability import StabilityMonitor
from dilightning.callbacks.training_error import TrainingSetErrorMonitor

__all__ = ["AlignmentMonitor", "SeriesCallback", "StabilityMonitor", "TrainingSetErrorMonitor"]
