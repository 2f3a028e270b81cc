"""Networks, losses and the LightningModule that trains them with any propagator."""

from dilightning.models.losses import LOSSES, output_error, per_sample_loss
from dilightning.models.module import DivergenceError, FeedforwardModule, StepRecord
from dilightning.models.network import FeedforwardNetwork

__all__ = ["LOSSES", "DivergenceError", "FeedforwardModule", "FeedforwardNetwork", "StepRecord", "output_error", "per_sample_loss"]
