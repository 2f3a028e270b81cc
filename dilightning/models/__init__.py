"""Networks, losses and the LightningModule that trains them with any propagator."""

from dilightning.models.losses import LOSSES, output_error, per_sample_loss
from dilightning.models.module import FeedforwardModule, StepRecord
from dilightning.models.network import FeedforwardNetwork

__all__ = ["LOSSES", "FeedforwardModule", "FeedforwardNetwork", "StepRecord", "output_error", "per_sample_loss"]
