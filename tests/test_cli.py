"""The ``dilightning`` command trains from the experiment YAML files."""

from __future__ import annotations

from pathlib import Path

import pytest

from dilightning.cli import run
from tests.conftest import MNIST_ROOT

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_fit_nonlinear_regression_from_yaml(tmp_path):
    cli = run(
        [
            "fit",
            f"--config={CONFIGS / 'nonlinear_regression.yaml'}",
            "--model.propagator=SLDI",
            "--model.alpha=0.01",
            "--data.init_args.num_samples=50",
            "--data.init_args.val_samples=10",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
        ]
    )

    assert cli.model.propagator.name == "SLDI"
    assert cli.model.propagator.alpha == 0.01
    assert cli.trainer.global_step == 50
    assert "val/loss" in cli.trainer.callback_metrics
    assert list(tmp_path.rglob("events.out.tfevents.*"))  # TensorBoard is the default logger


@pytest.mark.skipif(not (MNIST_ROOT / "MNIST" / "raw").is_dir(), reason=f"MNIST files not found in {MNIST_ROOT}")
def test_fit_mnist_classification_with_di(tmp_path):
    cli = run(
        [
            "fit",
            f"--config={CONFIGS / 'mnist_classification.yaml'}",
            "--model.propagator=DI",
            "--model.alpha=0.01",
            "--trainer.max_epochs=1",
            "--trainer.val_check_interval=1.0",
            f"--data.init_args.data_dir={MNIST_ROOT}",
            "--data.init_args.train_subset=200",
            "--data.init_args.eval_subset=200",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
        ]
    )

    assert cli.model.propagator.name == "DI"
    assert cli.trainer.global_step == 200
    assert 0.0 <= float(cli.trainer.callback_metrics["val/error"]) <= 1.0


def test_unknown_propagator_is_rejected(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(
            [
                "fit",
                f"--config={CONFIGS / 'linear_regression.yaml'}",
                "--model.propagator=XX",
                f"--trainer.default_root_dir={tmp_path}",
            ]
        )

    assert exit_info.value.code == 2
    assert "invalid config: model.propagator = 'XX'; valid choices are ['BP'" in capsys.readouterr().err


def test_console_command_exits_with_status_zero(tmp_path):
    import shutil
    import subprocess
    import sys

    # The installed ``dilightning`` script calls ``sys.exit(main())``; run it the same way.
    command = shutil.which("dilightning") or ""
    arguments = [
        "fit",
        f"--config={CONFIGS / 'linear_regression.yaml'}",
        "--data.init_args.num_samples=20",
        "--data.init_args.val_samples=5",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.enable_progress_bar=false",
    ]
    if command:
        process = subprocess.run([command, *arguments], capture_output=True, text=True, timeout=300)
    else:
        script = "import sys; from dilightning.cli import main; sys.exit(main())"
        process = subprocess.run([sys.executable, "-c", script, *arguments], capture_output=True, text=True, timeout=300)

    assert process.returncode == 0, process.stderr[-2000:]
    assert "DILightningCLI object" not in process.stderr
