"""Callbacks record the training-set error, λmax and alignment angles, and save them with the run."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from dilightning.callbacks import AlignmentMonitor, StabilityMonitor, TrainingSetErrorMonitor
from dilightning.data import NonlinearRegressionDataModule
from dilightning.models import FeedforwardModule

SIZES = [30, 20, 10, 10]


def _fit(module, callbacks, tmp_path, samples=25):
    data = NonlinearRegressionDataModule(num_samples=samples, val_samples=5, seed=0)
    trainer = pl.Trainer(
        max_epochs=1,
        logger=TensorBoardLogger(str(tmp_path), name="run", version=""),
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=data)
    return trainer, data


def _numpy_sse(module, data):
    inputs, targets = data.full_training_set()
    with torch.no_grad():
        return float(((module(inputs) - targets) ** 2).sum())


def test_training_set_error_before_and_after(tmp_path):
    module = FeedforwardModule(SIZES, ["tanh", "tanh", "linear"], "BP", lr=0.5, weight_scale=0.3)
    data = NonlinearRegressionDataModule(num_samples=25, val_samples=5, seed=0)
    initial = _numpy_sse(module, data)
    monitor = TrainingSetErrorMonitor(chunk_size=4)  # several chunks and a partial last one

    _fit(module, [monitor], tmp_path)

    steps, columns = monitor.as_arrays()
    assert steps == list(range(26))
    assert columns["train_set/sse"][0] == np.float64(initial) or abs(columns["train_set/sse"][0] - initial) < 1e-5 * initial
    assert abs(columns["train_set/sse"][-1] - _numpy_sse(module, data)) < 1e-5 * initial
    assert (tmp_path / "run" / "training_set_error.csv").is_file()


def test_stability_matches_numpy_eigenvalues(tmp_path):
    module = FeedforwardModule(SIZES, ["tanh", "tanh", "linear"], "DI", alpha=0.01, lr=0.1, weight_scale=0.3)
    monitor = StabilityMonitor()

    _fit(module, [monitor], tmp_path)

    W = module.network.layers[2].weight.detach().double().numpy()
    B = module.propagator.feedback(2).double().numpy()
    matrix = np.block([[-np.eye(10), B], [W, -0.01 * np.eye(10)]])
    steps, columns = monitor.as_arrays()
    assert abs(columns["lambda_max/layer_3"][-1] - np.linalg.eigvals(matrix).real.max()) < 1e-6
    assert steps[0] == 0


def test_stability_restabilizes_unstable_feedback(tmp_path):
    module = FeedforwardModule(SIZES, ["tanh", "tanh", "linear"], "DI", alpha=0.0, lr=0.01)
    module.propagator.set_feedback(2, -module.propagator.feedback(2))  # W B positive: unstable
    monitor = StabilityMonitor()

    _fit(module, [monitor], tmp_path, samples=5)

    _, columns = monitor.as_arrays()
    assert columns["restabilizations"][0] == 1
    assert max(columns["lambda_max/layer_3"]) < 0


def test_alignment_angles(tmp_path):
    module = FeedforwardModule(SIZES, ["tanh", "tanh", "linear"], "NDI", alpha=0.01, lr=0.01, weight_scale=0.3)
    monitor = AlignmentMonitor()

    _fit(module, [monitor], tmp_path)

    _, columns = monitor.as_arrays()
    # NDI against itself is exact; Tr-Init feedback starts aligned with -W^T and drifts slowly.
    assert max(columns["ndi_angle/layer_1"]) < 1e-2
    assert columns["feedback_angle/layer_2"][0] < 5.0
    assert all(0.0 <= value <= 180.0 for value in columns["pbp_angle/layer_2"])
    with open(tmp_path / "run" / "alignment.csv") as handle:
        header = next(csv.reader(handle))
    assert {"step", "ndi_angle/layer_1", "pbp_angle/layer_2", "feedback_angle/layer_3"} <= set(header)


class _StepSpy(pl.Callback):
    """Keep, per update, the quantities the alignment angles are defined from."""

    def __init__(self):
        self.steps = []

    def on_weight_update(self, trainer, pl_module):
        record = pl_module.last_step
        self.steps.append(
            {
                "weights": [w.double().numpy() for w in record.weights],
                "weights_after": [w.detach().double().numpy().copy() for w in pl_module.network.weights],
                "feedback": {i: pl_module.propagator.feedback(i).double().numpy().copy() for i in (1, 2)},
                "derivatives": [d.double().numpy() for d in record.cache.derivatives],
                "deltas": [d.double().numpy() for d in record.deltas],
            }
        )


def _numpy_angle(a, b):
    cosine = float(a.ravel() @ b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def test_alignment_angles_match_numpy_per_update(tmp_path):
    alpha = 0.05
    module = FeedforwardModule(SIZES, ["tanh", "tanh", "linear"], "DI", alpha=alpha, lr=0.2, weight_scale=0.3)
    monitor = AlignmentMonitor(chunk_size=3)  # several chunks and a partial last one
    spy = _StepSpy()

    _fit(module, [monitor, spy], tmp_path, samples=8)

    steps, columns = monitor.as_arrays()
    assert steps == list(range(1, 9))
    for row, step in enumerate(spy.steps):
        W, B, dg = step["weights"], step["feedback"], step["derivatives"]
        delta_out = step["deltas"][-1][0]
        ndi_2 = B[2] @ np.linalg.solve(W[2] @ B[2] - alpha * np.eye(10), delta_out) * dg[1][0]
        ndi_1 = B[1] @ np.linalg.solve(W[1] @ B[1] - alpha * np.eye(10), ndi_2) * dg[0][0]
        pbp_2 = np.linalg.pinv(W[2]) @ delta_out * dg[1][0]
        pbp_1 = np.linalg.pinv(W[1]) @ pbp_2 * dg[0][0]
        expected = {
            "ndi_angle/layer_1": _numpy_angle(step["deltas"][0], ndi_1),
            "ndi_angle/layer_2": _numpy_angle(step["deltas"][1], ndi_2),
            "pbp_angle/layer_1": _numpy_angle(step["deltas"][0], pbp_1),
            "pbp_angle/layer_2": _numpy_angle(step["deltas"][1], pbp_2),
            "feedback_angle/layer_2": _numpy_angle(B[1], -step["weights_after"][1].T),
            "feedback_angle/layer_3": _numpy_angle(B[2], -step["weights_after"][2].T),
        }
        for name, value in expected.items():
            # float32 training: the rules' errors carry float32 rounding, about 1e-3 degrees at most
            assert abs(columns[name][row] - value) < 2e-3 + 1e-3 * value, (step, name, columns[name][row], value)
    assert max(columns["pbp_angle/layer_1"]) > 1.0  # PBP differs from NDI here, so the check can fail


def test_alignment_skips_rules_without_feedback(tmp_path):
    module = FeedforwardModule(SIZES, ["tanh", "tanh", "linear"], "BP", lr=0.1)
    monitor = AlignmentMonitor()

    _fit(module, [monitor], tmp_path, samples=3)

    assert monitor.series == {}


def test_callbacks_log_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    module = FeedforwardModule(SIZES, ["tanh", "tanh", "linear"], "DI", alpha=0.01, lr=0.1)
    _fit(module, [StabilityMonitor(), AlignmentMonitor(), TrainingSetErrorMonitor()], tmp_path, samples=5)

    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"lambda_max/layer_2", "ndi_angle/layer_1", "feedback_angle/layer_3", "train_set/sse"} <= tags


def test_batched_squared_error_matches_direct_evaluation(generator):
    from dilightning.callbacks.training_error import batched_squared_error
    from dilightning.inversion import get_nonlinearity

    sizes, count = [7, 6, 5, 3], 4
    weights = [torch.randn(count, b, a, generator=generator, dtype=torch.float64) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [torch.randn(count, b, generator=generator, dtype=torch.float64) for b in sizes[1:]]
    biases[1] = None
    names = ["tanh", "relu", "linear"]
    inputs = torch.randn(50, 7, generator=generator, dtype=torch.float64)
    targets = torch.randn(50, 3, generator=generator, dtype=torch.float64)

    result = batched_squared_error(weights, biases, [get_nonlinearity(n) for n in names], inputs, targets, block_size=16)

    for s in range(count):
        h = inputs.numpy()
        for W, b, name in zip(weights, biases, names):
            a = h @ W[s].numpy().T + (0 if b is None else b[s].numpy())
            h = {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0), "linear": lambda v: v}[name](a)
        expected = ((h - targets.numpy()) ** 2).sum()
        assert abs(float(result[s]) - expected) < 1e-9 * expected


@pytest.mark.parametrize("nonlinearities", [["tanh", "tanh", "linear"], ["relu", "sigmoid", "tanh"]])
def test_batched_error_matches_numpy(nonlinearities):
    # 1300 samples in blocks of 512 leave a partial last block; the second layer has no bias.
    from dilightning.callbacks.training_error import batched_squared_error
    from dilightning.inversion import get_nonlinearity

    rng = np.random.default_rng(3)
    sizes, count = [6, 5, 4, 3], 7
    weights = [rng.normal(size=(count, sizes[i + 1], sizes[i])) for i in range(3)]
    biases = [rng.normal(size=(count, sizes[1])), None, rng.normal(size=(count, sizes[3]))]
    inputs, targets = rng.normal(size=(1300, sizes[0])), rng.normal(size=(1300, sizes[3]))
    functions = {"tanh": np.tanh, "linear": lambda a: a, "relu": lambda a: np.maximum(a, 0.0),
                 "sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a))}

    result = batched_squared_error(
        [torch.from_numpy(w) for w in weights],
        [None if b is None else torch.from_numpy(b) for b in biases],
        [get_nonlinearity(name) for name in nonlinearities],
        torch.from_numpy(inputs),
        torch.from_numpy(targets),
        block_size=512,
    )

    for index in range(count):
        h = inputs
        for layer, name in enumerate(nonlinearities):
            a = h @ weights[layer][index].T + (0.0 if biases[layer] is None else biases[layer][index])
            h = functions[name](a)
        expected = ((h - targets) ** 2).sum()
        assert abs(float(result[index]) - expected) <= 1e-10 * expected
