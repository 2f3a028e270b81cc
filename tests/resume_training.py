"""Train a small nonlinear-regression DI network with checkpoints, for the exact-resume test.

``python tests/resume_training.py OUT --mode full|interrupted|resume``: ``full`` trains without
interruption; ``interrupted`` does the same but slowly, so the test can kill it between checkpoints;
``resume`` continues from ``OUT/checkpoints/last.ckpt``. Each finished mode saves its final weights,
feedback, recorded series and logged metrics to ``OUT/result_<mode>.pt``.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from dilightning.callbacks import StabilityMonitor, TrainingSetErrorMonitor
from dilightning.data import NonlinearRegressionDataModule
from dilightning.models import FeedforwardModule


class Slow(pl.Callback):
    """Sleep after every loaded batch, so a test can kill the run between two checkpoints."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        time.sleep(0.3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--mode", choices=("full", "interrupted", "resume"), required=True)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)

    model = FeedforwardModule(
        [30, 20, 10, 10], ["tanh", "tanh", "linear"], "DI", alpha=0.01, lr=0.01, momentum=0.5, max_delta_norm=1.0,
        weight_scale=0.3, update_batch_size=1, feedback_init="random", feedback_scale=0.3,
    )
    data = NonlinearRegressionDataModule(num_samples=120, val_samples=1, batch_size=10, seed=3)
    monitors = [TrainingSetErrorMonitor(chunk_size=7), StabilityMonitor()]
    checkpoints = ModelCheckpoint(dirpath=args.out / "checkpoints", every_n_train_steps=20, save_last=True, save_top_k=-1)
    callbacks = [*monitors, checkpoints] + ([Slow()] if args.mode == "interrupted" else [])
    trainer = pl.Trainer(
        max_epochs=2, logger=False, callbacks=callbacks, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, accelerator="cpu", default_root_dir=str(args.out),
    )
    ckpt_path = str(args.out / "checkpoints" / "last.ckpt") if args.mode == "resume" else None
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)

    torch.save(
        {
            "state": {name: value.detach().clone() for name, value in model.state_dict().items()},
            "series": [monitor.series for monitor in monitors],
            "metrics": {name: float(value) for name, value in trainer.callback_metrics.items()},
            "global_step": trainer.global_step,
        },
        args.out / f"result_{args.mode}.pt",
    )


if __name__ == "__main__":
    main()
