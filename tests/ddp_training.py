"""Train with Lightning's DDP on two CPU processes and save each rank's final weights.

Run as a script (``python tests/ddp_training.py OUT_DIR [--devices 2] [--propagator DI]``); Lightning's
DDP launcher starts the second rank by running this file again. Used by ``test_ddp.py``.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from dilightning.callbacks import StabilityMonitor
from dilightning.models import FeedforwardModule

SIZES = [12, 10, 8, 6]
BATCH_PER_RANK = 4
STEPS = 5


def dataset() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2 * BATCH_PER_RANK * STEPS, SIZES[0], generator=generator, dtype=torch.float64)
    t = torch.randn(2 * BATCH_PER_RANK * STEPS, SIZES[-1], generator=generator, dtype=torch.float64)
    return TensorDataset(x, t)


def combined_order(size: int) -> list[int]:
    """Return the example order whose consecutive batches of 2 × BATCH_PER_RANK equal the DDP steps.

    For training, Lightning wraps the loader in ``DistributedSampler(shuffle=True, seed=0)``: epoch
    0 permutes the examples with ``torch.randperm(size, generator=manual_seed(0))`` and rank ``r``
    takes every second entry from position ``r``. Step ``k`` of the two ranks together therefore
    covers batch ``k`` of rank 0 followed by batch ``k`` of rank 1.
    """
    permutation = torch.randperm(size, generator=torch.Generator().manual_seed(0)).tolist()
    ranks = [permutation[0::2], permutation[1::2]]
    order = []
    for start in range(0, len(ranks[0]), BATCH_PER_RANK):
        for rank in ranks:
            order += rank[start : start + BATCH_PER_RANK]
    return order


def build_model(propagator: str) -> FeedforwardModule:
    options = {"alpha": 0.01} if propagator not in ("BP", "FA", "PBP") else {}
    model = FeedforwardModule(SIZES, ["tanh", "tanh", "linear"], propagator, lr=0.02, weight_scale=0.3, **options)
    return model.double()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--propagator", default="DI")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)

    model = build_model(args.propagator)
    data = dataset()
    if args.devices > 1:
        loader = DataLoader(data, batch_size=BATCH_PER_RANK)
    else:
        loader = DataLoader(data, batch_size=2 * BATCH_PER_RANK, sampler=combined_order(len(data)))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=args.devices,
        strategy="ddp" if args.devices > 1 else "auto",
        max_steps=STEPS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[StabilityMonitor()],  # a series callback: rank 0 saves its CSV when training ends
        default_root_dir=str(args.out / f"root_devices{args.devices}"),
    )
    trainer.fit(model, loader)
    args.out.mkdir(parents=True, exist_ok=True)
    state = {name: value.detach().cpu() for name, value in model.network.state_dict().items()}
    torch.save(state, args.out / f"weights_devices{args.devices}_rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main()
