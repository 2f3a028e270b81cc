"""Invalid configs fail before training with one line naming the key, the value and the valid range."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from dilightning.reproduce.experiment import build_specs, load_config
from dilightning.validation import ConfigError, validate_experiment

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


@pytest.mark.parametrize("name", ["linear_regression", "nonlinear_regression", "mnist_classification", "mnist_autoencoder"])
def test_shipped_configs_are_valid(name):
    validate_experiment(load_config(name))


def _broken(name: str, section: str, key: str, value):
    config = copy.deepcopy(load_config(name))
    target = config[section] if section != "data" else config["data"]["init_args"]
    target[key] = value
    return config


@pytest.mark.parametrize(
    ("name", "section", "key", "value", "message"),
    [
        ("nonlinear_regression", "model", "propagator", "TP", r"model.propagator = 'TP'; valid choices are \['BP'"),
        ("nonlinear_regression", "model", "nonlinearities", ["tanh", "tahn", "linear"],
         r"model.nonlinearities\[1\] = 'tahn'; valid choices are"),
        ("nonlinear_regression", "model", "nonlinearities", ["tanh", "linear"], r"model.nonlinearities = .*expected 3 names"),
        ("nonlinear_regression", "model", "feedback_init", "neg_transpose", r"model.feedback_init = 'neg_transpose'; valid"),
        ("nonlinear_regression", "model", "weight_init", "xavier", r"model.weight_init = 'xavier'; valid choices"),
        ("nonlinear_regression", "model", "layer_sizes", [30, 0, 10, 10], r"model.layer_sizes = .*positive integers"),
        ("nonlinear_regression", "model", "alpha", -0.1, r"model.alpha = -0.1; the controller leak must be >= 0"),
        ("nonlinear_regression", "model", "lr", -1e-3, r"model.lr = -0.001; the learning rate must be > 0"),
        ("nonlinear_regression", "model", "weight_decay", -1.0, r"model.weight_decay = -1.0; must be >= 0"),
        ("nonlinear_regression", "model", "dt", 2.5, r"model.dt = 2.5; the Euler step must lie in \(0, 2.0\)"),
        ("nonlinear_regression", "model", "online_threads", 0, r"model.online_threads = 0; must be an integer >= 1 or null"),
        ("nonlinear_regression", "model", "update_batch_size", 0, r"model.update_batch_size = 0; must be an integer"),
        ("nonlinear_regression", "model", "layer_sizes", [31, 20, 10, 10], r"teacher_sizes = .*must equal the model's 31"),
        ("linear_regression", "data", "output_size", 12, r"output_size = 12; must equal model.layer_sizes\[-1\] = 10"),
        ("mnist_classification", "model", "layer_sizes", [784, 1000, 12],
         r"model.layer_sizes\[-1\] = 12; the MNIST classification task needs 10 outputs"),
        ("mnist_classification", "model", "layer_sizes", [700, 1000, 10], r"model.layer_sizes\[0\] = 700; MNIST images"),
    ],
)
def test_invalid_value_is_named(name, section, key, value, message):
    with pytest.raises(ConfigError, match=message):
        validate_experiment(_broken(name, section, key, value))


def test_dt_times_alpha_bound():
    config = _broken("nonlinear_regression", "model", "dt", 1.5)
    config["model"]["alpha"] = 1.5

    with pytest.raises(ConfigError, match=r"dt \* alpha must be < 2.0"):
        validate_experiment(config)


def test_invalid_variant_is_named():
    config = copy.deepcopy(load_config("linear_regression"))
    config["variants"][7]["alpha"] = -1

    with pytest.raises(ConfigError, match=r"variants\[7\] \(DI Tr α=0\).alpha = -1"):
        validate_experiment(config)


def test_reproduce_validates_before_training(tmp_path, monkeypatch):
    config = _broken("linear_regression", "model", "lr", 0)
    monkeypatch.setattr("dilightning.reproduce.experiment.load_config", lambda name: config)

    with pytest.raises(ConfigError, match=r"linear_regression.yaml: invalid config: model.lr = 0"):
        build_specs("linear_regression", scale="smoke", seed=0, output_dir=tmp_path)


def test_cli_prints_one_line_and_exits_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dilightning.cli", "fit", f"--config={CONFIGS / 'nonlinear_regression.yaml'}",
         "--model.alpha=-0.5", f"--trainer.default_root_dir={tmp_path}"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )

    assert result.returncode == 2
    assert "error: invalid config: model.alpha = -0.5; the controller leak must be >= 0" in result.stderr
    assert "Traceback" not in result.stderr
