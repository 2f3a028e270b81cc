"""Equal configs and seeds give bit-identical weights and metrics; all variants share their start."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from dilightning.callbacks import AlignmentMonitor, StabilityMonitor, TrainingSetErrorMonitor
from dilightning.data import NonlinearRegressionDataModule
from dilightning.models import FeedforwardModule
from dilightning.reproduce.experiment import build_specs


def _train(propagator: str, options: dict, root):
    model = FeedforwardModule([30, 20, 10, 10], ["tanh", "tanh", "linear"], propagator, lr=0.05, weight_scale=0.3,
                              update_batch_size=1, init_seed=4, **options)
    monitors = [TrainingSetErrorMonitor(), StabilityMonitor(), AlignmentMonitor()]
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, callbacks=monitors,
                         default_root_dir=str(root))
    trainer.fit(model, datamodule=NonlinearRegressionDataModule(num_samples=60, val_samples=10, batch_size=20, seed=4))
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    return model.state_dict(), [monitor.series for monitor in monitors], metrics


@pytest.mark.parametrize(
    ("propagator", "options"),
    [("DI", {"alpha": 0.01, "feedback_init": "random", "feedback_scale": 0.3}), ("SLDI", {"alpha": 0.01}), ("FA", {})],
)
def test_two_runs_are_bit_identical(propagator, options, tmp_path):
    first_state, first_series, first_metrics = _train(propagator, options, tmp_path / "first")
    second_state, second_series, second_metrics = _train(propagator, options, tmp_path / "second")

    for name, value in first_state.items():
        assert torch.equal(value, second_state[name]), name
    assert first_series == second_series
    assert first_metrics == second_metrics


def test_fig3_variants_start_identically(tmp_path):
    specs = build_specs("nonlinear_regression", scale="smoke", seed=2, output_dir=tmp_path)
    models = [FeedforwardModule(**spec.model) for spec in specs]

    for model in models[1:]:
        for reference, parameter in zip(models[0].network.parameters(), model.network.parameters()):
            assert torch.equal(reference, parameter)


def test_fig3_variants_see_the_same_order(tmp_path):
    specs = build_specs("nonlinear_regression", scale="smoke", seed=2, output_dir=tmp_path)
    orders = []
    for spec in specs[:3]:
        data = NonlinearRegressionDataModule(**spec.data_args)
        orders.append(torch.cat([x for x, _ in data.train_dataloader()]))

    assert torch.equal(orders[0], orders[1])
    assert torch.equal(orders[0], orders[2])
