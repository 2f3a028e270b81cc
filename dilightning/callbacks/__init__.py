"""Callbacks that record training-set error, validation curves, stability and alignment angles."""

from dilightning.callbacks.alignment import AlignmentMonitor
from dilightning.callbacks.series import SeriesCallback
from dilightning.callbacks.stability import StabilityMonitor
from dilightning.callbacks.training_error import TrainingSetErrorMonitor
from dilightning.callbacks.validation import ValidationMonitor

__all__ = ["AlignmentMonitor", "SeriesCallback", "StabilityMonitor", "TrainingSetErrorMonitor", "ValidationMonitor"]
