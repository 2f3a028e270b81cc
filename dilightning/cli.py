"""The ``dilightning`` command: Lightning's CLI for :class:`~dilightning.models.FeedforwardModule`.

Examples::

    dilightning fit --config configs/mnist_classification.yaml --model.propagator DI --model.alpha 0.01
    dilightning fit --config configs/nonlinear_regression.yaml --trainer.max_epochs 2
    dilightning test --config configs/mnist_classification.yaml --ckpt_path runs/.../last.ckpt

The experiment YAML files also hold ``experiment`` and ``variants`` sections for
``python -m dilightning.reproduce``; the CLI accepts and ignores them, so one file serves both.
TensorBoard is the default logger (``tensorboard --logdir lightning_logs``).
"""

from __future__ import annotations

import sys
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from dilightning.models import FeedforwardModule
from dilightning.validation import ConfigError, validate_data, validate_model


class DILightningCLI(LightningCLI):
    """LightningCLI that validates the config first and accepts the configs' reproduce sections."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--experiment", type=dict[str, Any], default={}, help="metadata for reproduce (ignored)")
        parser.add_argument("--variants", type=list[dict[str, Any]], default=[], help="variants for reproduce (ignored)")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        model = {key: value for key, value in dict(config.get("model", {})).items()}
        data = config.get("data") or {}
        try:
            validate_model(model)
            if data.get("class_path"):
                validate_data(str(data["class_path"]), dict(data.get("init_args") or {}), model)
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None


def run(args: list[str] | None = None) -> DILightningCLI:
    """Run the CLI with ``args`` (``sys.argv[1:]`` when ``None``) and return it, for scripts and tests."""
    return DILightningCLI(
        FeedforwardModule,
        pl.LightningDataModule,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
    )


def main() -> None:
    """Entry point of the ``dilightning`` command; exits with status 0 after a successful run."""
    run()


if __name__ == "__main__":
    main()
