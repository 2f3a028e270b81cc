"""Checks of an experiment config before any training starts.

Each problem raises :class:`ConfigError` with one line that names the config key, the bad value
and the valid choices or range, so a wrong YAML file or command-line option fails in the first
second instead of deep inside torch.
"""

from __future__ import annotations

import math
from typing import Any

from dilightning.inversion.nonlinearities import NONLINEARITIES
from dilightning.models.losses import LOSSES
from dilightning.models.network import OUTPUT_ONLY_NONLINEARITIES, WEIGHT_INITS
from dilightning.propagators import FEEDBACK_INITS, PROPAGATORS

# The Euler updates multiply the state by (1 − dt) and the controller by (1 − dt α). Beyond these
# bounds both grow by themselves, whatever the weights are.
MAX_DT = 2.0
MNIST_PIXELS = 784
MNIST_CLASSES = 10


class ConfigError(ValueError):
    """An invalid value in an experiment config."""


def _fail(key: str, value: Any, expected: str) -> None:
    raise ConfigError(f"invalid config: {key} = {value!r}; {expected}")


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        _fail(key, value, "expected a finite number")
    return float(value)


def validate_model(model: dict[str, Any], prefix: str = "model") -> None:
    """Check the options of :class:`~dilightning.models.FeedforwardModule` given as a dictionary."""
    sizes = model.get("layer_sizes")
    if not isinstance(sizes, (list, tuple)) or len(sizes) < 2 or not all(
        isinstance(size, int) and not isinstance(size, bool) and size > 0 for size in sizes
    ):
        _fail(f"{prefix}.layer_sizes", sizes, "expected a list of at least two positive integers [d_0, …, d_L]")
    layers = len(sizes) - 1

    names = model.get("nonlinearities")
    if not isinstance(names, (list, tuple)) or len(names) != layers:
        _fail(f"{prefix}.nonlinearities", names, f"expected {layers} names, one per layer of layer_sizes={list(sizes)}")
    valid = sorted(NONLINEARITIES) + list(OUTPUT_ONLY_NONLINEARITIES)
    for index, name in enumerate(names):
        if name not in valid:
            _fail(f"{prefix}.nonlinearities[{index}]", name, f"valid choices are {valid}")
        if name in OUTPUT_ONLY_NONLINEARITIES and index != layers - 1:
            _fail(f"{prefix}.nonlinearities[{index}]", name, "softmax is only valid for the output layer")

    propagator = model.get("propagator", "BP")
    if propagator not in PROPAGATORS:
        _fail(f"{prefix}.propagator", propagator, f"valid choices are {list(PROPAGATORS)}")
    if model.get("feedback_init") is not None and model["feedback_init"] not in FEEDBACK_INITS:
        _fail(f"{prefix}.feedback_init", model["feedback_init"], f"valid choices are {list(FEEDBACK_INITS)}")
    if model.get("weight_init", "uniform") not in WEIGHT_INITS:
        _fail(f"{prefix}.weight_init", model["weight_init"], f"valid choices are {list(WEIGHT_INITS)}")
    if model.get("loss", "mse") not in LOSSES:
        _fail(f"{prefix}.loss", model["loss"], f"valid choices are {list(LOSSES)}")
    if (names[-1] == "softmax") != (model.get("loss", "mse") == "cross_entropy"):
        _fail(f"{prefix}.loss", model.get("loss", "mse"), "use loss: cross_entropy exactly when the output is softmax")

    alpha = _number(f"{prefix}.alpha", model["alpha"]) if model.get("alpha") is not None else 0.0
    if alpha < 0:
        _fail(f"{prefix}.alpha", model["alpha"], "the controller leak must be >= 0")
    if _number(f"{prefix}.lr", model.get("lr", 1e-2)) <= 0:
        _fail(f"{prefix}.lr", model["lr"], "the learning rate must be > 0")
    for key in ("weight_decay", "momentum"):
        if model.get(key) is not None and _number(f"{prefix}.{key}", model[key]) < 0:
            _fail(f"{prefix}.{key}", model[key], "must be >= 0")
    for key in ("max_delta_norm", "feedback_scale", "gradient_clip_val"):
        if model.get(key) is not None and _number(f"{prefix}.{key}", model[key]) <= 0:
            _fail(f"{prefix}.{key}", model[key], "must be > 0 or null")
    if model.get("dt") is not None:
        dt = _number(f"{prefix}.dt", model["dt"])
        if not 0 < dt < MAX_DT:
            _fail(f"{prefix}.dt", model["dt"], f"the Euler step must lie in (0, {MAX_DT}) for the updates to stay stable")
        if dt * alpha >= MAX_DT:
            _fail(f"{prefix}.dt", model["dt"], f"dt * alpha must be < {MAX_DT} (alpha = {alpha}) for the controller to stay stable")
    if model.get("steps") is not None and (not isinstance(model["steps"], int) or model["steps"] < 1):
        _fail(f"{prefix}.steps", model["steps"], "the number of Euler steps must be an integer >= 1")
    for key in ("update_batch_size", "online_threads"):
        value = model.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            _fail(f"{prefix}.{key}", value, "must be an integer >= 1 or null")


def validate_data(data_class: str, data_args: dict[str, Any], model: dict[str, Any]) -> None:
    """Check that the DataModule delivers what the model's first and last layers expect."""
    sizes = model["layer_sizes"]
    name = data_class.rsplit(".", 1)[-1]
    if name == "LinearRegressionDataModule":
        if data_args.get("input_size", 30) != sizes[0]:
            _fail("data.init_args.input_size", data_args.get("input_size", 30), f"must equal model.layer_sizes[0] = {sizes[0]}")
        if data_args.get("output_size", 10) != sizes[-1]:
            _fail("data.init_args.output_size", data_args.get("output_size", 10), f"must equal model.layer_sizes[-1] = {sizes[-1]}")
    elif name == "NonlinearRegressionDataModule":
        teacher = data_args.get("teacher_sizes") or [30, 20, 10, 10]
        if teacher[0] != sizes[0] or teacher[-1] != sizes[-1]:
            _fail("data.init_args.teacher_sizes", teacher, f"its first and last sizes must equal the model's {sizes[0]} and {sizes[-1]}")
    elif name == "MNISTDataModule":
        if sizes[0] != MNIST_PIXELS:
            _fail("model.layer_sizes[0]", sizes[0], f"MNIST images have {MNIST_PIXELS} pixels")
        task = data_args.get("task", "classification")
        expected = MNIST_CLASSES if task == "classification" else MNIST_PIXELS
        if sizes[-1] != expected:
            _fail("model.layer_sizes[-1]", sizes[-1], f"the MNIST {task} task needs {expected} outputs")
        if (task == "classification") != (model.get("loss", "mse") == "cross_entropy"):
            _fail("model.loss", model.get("loss", "mse"), f"the MNIST {task} task needs loss "
                  f"{'cross_entropy' if task == 'classification' else 'mse'}")
    for key in ("batch_size", "num_samples"):
        if key in data_args and (not isinstance(data_args[key], int) or data_args[key] < 1):
            _fail(f"data.init_args.{key}", data_args[key], "must be an integer >= 1")


def validate_experiment(config: dict[str, Any]) -> None:
    """Check the model, the data and every variant of an experiment config."""
    model = config.get("model", {})
    validate_model(model)
    data = config.get("data", {})
    validate_data(data.get("class_path", ""), data.get("init_args", {}), model)
    for index, variant in enumerate(config.get("variants", [])):
        merged = {**model, **{key: value for key, value in variant.items() if key not in ("label", "color")}}
        validate_model(merged, prefix=f"variants[{index}] ({variant.get('label', '?')})")
