"""Divergence stops a run with the update, the layer and the rule; reproduce records it and draws the rest."""

from __future__ import annotations

import dataclasses
import json

import pytest
import pytorch_lightning as pl

from dilightning.data import NonlinearRegressionDataModule
from dilightning.inversion import FeedbackStabilizationError
from dilightning.models import DivergenceError, FeedforwardModule
from dilightning.reproduce import fig3
from dilightning.reproduce.experiment import build_specs
from dilightning.reproduce.runner import run_specs

SIZES = [30, 20, 10, 10]


def _trainer() -> pl.Trainer:
    return pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)


def test_exploding_weights_stop_with_message():
    model = FeedforwardModule(SIZES, ["tanh", "tanh", "linear"], "DI", alpha=0.01, lr=1e30, weight_scale=0.5)
    data = NonlinearRegressionDataModule(num_samples=20, val_samples=1)

    with pytest.raises(DivergenceError, match=r"DI diverged at update \d+: the (weight W|error δ)_\d of layer \d contains NaN or Inf"):
        _trainer().fit(model, datamodule=data)


def test_nan_input_stops_at_first_update():
    model = FeedforwardModule(SIZES, ["tanh", "tanh", "linear"], "BP", check_finite=True)
    data = NonlinearRegressionDataModule(num_samples=5, val_samples=1)
    data.setup()
    data._train[0][0, 0] = float("nan")
    data._train[0][:] = data._train[0][0]  # every example carries the NaN

    with pytest.raises(DivergenceError, match=r"BP diverged at update 1: the error δ_1 of layer 1 contains NaN or Inf"):
        _trainer().fit(model, datamodule=data)


def test_unrepairable_instability_stops_with_reason():
    # An expanding layer (4 -> 8) at alpha = 0 has the eigenvalue 0 whatever B is, so SSA cannot help.
    model = FeedforwardModule([6, 4, 8, 3], ["tanh", "tanh", "linear"], "DI", alpha=0.0, weight_scale=0.3)
    model.propagator.set_feedback(1, -model.propagator.feedback(1))
    from dilightning.callbacks import StabilityMonitor

    trainer = pl.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                         callbacks=[StabilityMonitor()])
    data = NonlinearRegressionDataModule(teacher_sizes=[6, 4, 8, 3], num_samples=5, val_samples=1)

    with pytest.raises(FeedbackStabilizationError, match="expanding layer .* always has the eigenvalue"):
        trainer.fit(model, datamodule=data)


def test_reproduce_records_diverged_variant_and_draws_others(tmp_path):
    specs = build_specs("linear_regression", scale="smoke", seed=0, output_dir=tmp_path)
    specs = [spec for spec in specs if spec.update_mode == "fixed_lr"][:3]
    broken = dataclasses.replace(specs[1], model={**specs[1].model, "lr": 1e30})

    results = run_specs([specs[0], broken, specs[2]], workers=1)
    fig3.draw(results, tmp_path / "fig3", "test")
    summary = fig3.summarize(results)

    entries = summary["linear_regression/fixed_lr"]
    assert entries[broken.label]["status"] == "diverged"
    assert "diverged at update" in entries[broken.label]["message"]
    assert entries[specs[0].label]["status"] == "ok"
    assert (tmp_path / "fig3.png").stat().st_size > 0
    json.dumps(summary)  # NaN-free enough to serialize


def test_diverged_run_keeps_buffered_series(tmp_path):
    from dilightning.callbacks import AlignmentMonitor, TrainingSetErrorMonitor

    model = FeedforwardModule(SIZES, ["tanh", "tanh", "linear"], "DI", alpha=0.01, lr=1e30, weight_scale=0.5,
                              update_batch_size=1)
    monitors = [TrainingSetErrorMonitor(chunk_size=64), AlignmentMonitor(chunk_size=64)]
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                         callbacks=monitors, default_root_dir=str(tmp_path))
    data = NonlinearRegressionDataModule(num_samples=20, val_samples=1, batch_size=20)

    with pytest.raises(DivergenceError):
        trainer.fit(model, datamodule=data)

    # Both monitors buffer up to 64 updates; the updates before the divergence are still recorded.
    assert 0 in monitors[0].series["train_set/sse"]
    assert 1 in monitors[1].series["feedback_angle/layer_2"]
