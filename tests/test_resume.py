"""A training run killed mid-epoch and resumed from its last checkpoint ends exactly like an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

SCRIPT = Path(__file__).with_name("resume_training.py")
ROOT = Path(__file__).resolve().parents[1]


def _run(out: Path, mode: str) -> dict:
    subprocess.run([sys.executable, str(SCRIPT), str(out), "--mode", mode], cwd=ROOT, check=True, timeout=300)
    return torch.load(out / f"result_{mode}.pt")


def test_killed_run_resumes_exactly(tmp_path):
    full = _run(tmp_path / "full", "full")

    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen([sys.executable, str(SCRIPT), str(interrupted), "--mode", "interrupted"], cwd=ROOT)
    checkpoints = interrupted / "checkpoints"
    deadline = time.time() + 240
    # Kill after the checkpoint at update 40 (the middle of the first epoch of 120 examples).
    while time.time() < deadline and not list(checkpoints.glob("*step=40*.ckpt")):
        time.sleep(0.05)
    time.sleep(0.4)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (interrupted / "result_interrupted.pt").exists()
    assert (checkpoints / "last.ckpt").is_file()

    resumed = _run(interrupted, "resume")

    assert resumed["global_step"] == full["global_step"] == 240
    for name, value in full["state"].items():
        assert torch.equal(resumed["state"][name], value), name
    assert resumed["series"] == full["series"]
    assert resumed["metrics"] == full["metrics"]


def _fit_regression(root: Path, max_epochs: int, ckpt_path: str | None = None):
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    from dilightning.data import NonlinearRegressionDataModule
    from dilightning.models import FeedforwardModule

    model = FeedforwardModule([30, 20, 10, 10], ["tanh", "tanh", "linear"], "DI", alpha=0.01, lr=0.05,
                              weight_scale=0.3, update_batch_size=1)
    data = NonlinearRegressionDataModule(num_samples=30, val_samples=5, batch_size=10, seed=2)
    checkpoints = ModelCheckpoint(dirpath=root / "checkpoints", save_top_k=-1)  # one file per epoch end
    trainer = pl.Trainer(max_epochs=max_epochs, logger=False, callbacks=[checkpoints], enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                         default_root_dir=str(root))
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return model, trainer


def test_resume_from_epoch_end_trains_next_epoch(tmp_path):
    full, full_trainer = _fit_regression(tmp_path / "full", max_epochs=2)
    _fit_regression(tmp_path / "first", max_epochs=1)
    (checkpoint,) = (tmp_path / "first" / "checkpoints").glob("*.ckpt")

    resumed, resumed_trainer = _fit_regression(tmp_path / "resumed", max_epochs=2, ckpt_path=str(checkpoint))

    assert full_trainer.global_step == 60
    assert resumed_trainer.global_step == 60  # the second epoch ran all 30 updates
    for expected, actual in zip(full.network.parameters(), resumed.network.parameters()):
        assert torch.equal(expected, actual)
