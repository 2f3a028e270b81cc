"""Experiment configs: locate the YAML files, apply a scale, and expand them into independent runs.

An experiment YAML has the sections ``trainer``, ``model`` and ``data`` that ``dilightning fit``
(LightningCLI) reads, plus ``experiment`` (name, title, figure, update modes, the overrides of the
smoke scale) and ``variants`` (a list of model-option overrides, one per curve of the figure, each with a ``label`` and
optionally the ``color`` of its leak in Table 1: ``blue``, ``yellow`` or ``red``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dilightning.validation import ConfigError, validate_experiment

SCALES = ("paper", "quick", "smoke")
UPDATE_MODES = {"fixed_lr": {}, "fixed_norm": {"fixed_norm_updates": True}}
WEIGHT_INIT_SUFFIXES = {"uniform": "", "orthogonal": " (orth.)"}
# Monitors of the regression figures, used when an experiment names none. Every update is saved
# with the run, and every tenth also goes to TensorBoard, which shows 1000 points per curve.
DEFAULT_MONITORS = {
    "training_set_error": {"log_every_n_steps": 10},
    "stability": {"log_every_n_steps": 10},
    "alignment": {"log_every_n_steps": 10},
}


def config_dir() -> Path:
    """Return the folder with the experiment YAML files.

    Looks at ``$DILIGHTNING_CONFIG_DIR``, then ``configs/`` of the source checkout this package was
    installed from (``pip install -e .``), then ``./configs``.
    """
    candidates = []
    if os.environ.get("DILIGHTNING_CONFIG_DIR"):
        candidates.append(Path(os.environ["DILIGHTNING_CONFIG_DIR"]))
    candidates += [Path(__file__).resolve().parents[2] / "configs", Path.cwd() / "configs"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    searched = ", ".join(str(candidate) for candidate in candidates)
    raise FileNotFoundError(
        f"experiment configs not found (searched {searched}); run from the repository root, install with "
        "'pip install -e .', or set DILIGHTNING_CONFIG_DIR to the configs folder"
    )


def load_config(name: str) -> dict[str, Any]:
    """Load ``configs/<name>.yaml`` as a dictionary."""
    path = config_dir() / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in config_dir().glob("*.yaml"))
        raise FileNotFoundError(f"config {path} not found; available configs: {available}")
    with path.open() as handle:
        return yaml.safe_load(handle)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def slugify(text: str) -> str:
    """Return a file-system friendly name for a variant label (``"DI Tr α=1e-3"`` → ``"DI_Tr_alpha1e-3"``)."""
    text = text.replace("α=", "alpha").replace("ᵀ", "T").replace("−", "-")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


@dataclass(frozen=True)
class RunSpec:
    """Everything one training run needs; picklable, so it can be sent to a worker process."""

    experiment: str
    label: str
    update_mode: str
    model: dict[str, Any]
    data_class: str
    data_args: dict[str, Any]
    trainer: dict[str, Any]
    output_dir: str
    seed: int
    threads: int = 1
    monitors: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(DEFAULT_MONITORS))
    artifacts: tuple[str, ...] = ()
    validate_before_training: bool = False
    color: str | None = None

    @property
    def name(self) -> str:
        """Unique run name inside its experiment, e.g. ``"fixed_lr/DI_Tr_alpha0"``."""
        return f"{self.update_mode}/{slugify(self.label)}"

    @property
    def weight_init(self) -> str:
        """Weight initialization of the run (``"uniform"`` or ``"orthogonal"``)."""
        return str(self.model.get("weight_init", "uniform"))

    def config_hash(self) -> str:
        """Return a short hash of everything that determines the run's results."""
        from dilightning import __version__

        payload = {key: value for key, value in asdict(self).items() if key not in ("output_dir", "threads", "color")}
        payload["version"] = __version__
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def build_specs(
    name: str,
    *,
    scale: str,
    seed: int,
    output_dir: str | Path,
    threads: int = 1,
    data_overrides: dict[str, Any] | None = None,
) -> list[RunSpec]:
    """Expand ``configs/<name>.yaml`` into one :class:`RunSpec` per variant, update mode and weight init.

    ``scale`` selects the paper's sizes or the ``quick``/``smoke`` overrides of the experiment
    section. Every run of the experiment gets the same data seed and weight seed, so all variants
    with one weight initialization start from identical weights and see the examples in the same
    order. ``data_overrides`` replaces DataModule arguments (for example ``data_dir``).
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid choices are {list(SCALES)}")
    config = load_config(name)
    experiment = config.get("experiment", {})
    if scale != "paper":
        if scale not in experiment:
            raise ValueError(f"{name}.yaml defines no {scale!r} scale; valid scales here: paper, "
                             f"{', '.join(key for key in ('quick', 'smoke') if key in experiment)}")
        config = _merge(config, experiment[scale])
    data = config["data"]
    data_args = {**data.get("init_args", {}), **(data_overrides or {}), "seed": seed}
    try:
        validate_experiment({**config, "data": {**data, "init_args": data_args}})
    except ConfigError as error:
        raise ConfigError(f"{name}.yaml: {error}") from None
    trainer = {key: value for key, value in config.get("trainer", {}).items() if key != "callbacks"}
    monitors = experiment.get("monitors", DEFAULT_MONITORS)
    specs = []
    for mode in experiment.get("update_modes", ["fixed_lr"]):
        if mode not in UPDATE_MODES:
            raise ValueError(f"unknown update mode {mode!r} in {name}.yaml; valid choices are {list(UPDATE_MODES)}")
        for weight_init in experiment.get("weight_inits", [config["model"].get("weight_init", "uniform")]):
            if weight_init not in WEIGHT_INIT_SUFFIXES:
                raise ValueError(f"unknown weight init {weight_init!r} in {name}.yaml; valid: {list(WEIGHT_INIT_SUFFIXES)}")
            for variant in config["variants"]:
                overrides = {key: value for key, value in variant.items() if key not in ("label", "color")}
                model = {
                    **config["model"],
                    **overrides,
                    **UPDATE_MODES[mode],
                    "weight_init": weight_init,
                    "init_seed": seed,
                }
                specs.append(
                    RunSpec(
                        experiment=experiment.get("name", name),
                        label=variant["label"] + WEIGHT_INIT_SUFFIXES[weight_init],
                        update_mode=mode,
                        model=model,
                        data_class=data["class_path"],
                        data_args=data_args,
                        trainer=trainer,
                        output_dir=str(output_dir),
                        seed=seed,
                        threads=threads,
                        monitors=monitors,
                        artifacts=tuple(experiment.get("artifacts", ())),
                        validate_before_training=bool(experiment.get("validate_before_training", False)),
                        color=variant.get("color"),
                    )
                )
    return specs
