"""``python -m dilightning.reproduce fig3 --scale smoke`` writes the figure, its data and a finite summary."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dilightning.reproduce.__main__ import main
from dilightning.reproduce.experiment import build_specs


def _numbers(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _numbers(value)
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield tree


@pytest.fixture(scope="module")
def smoke_output(tmp_path_factory):
    out = tmp_path_factory.mktemp("fig3")
    assert main(["fig3", "--scale", "smoke", "--out", str(out), "--workers", "2"]) == 0
    return out


def test_fig3_outputs_exist(smoke_output):
    for name in ("fig3.png", "fig3.pdf", "fig3_summary.json", "fig3_data.npz"):
        assert (smoke_output / name).stat().st_size > 0


def test_fig3_summary_is_complete_and_finite(smoke_output):
    summary = json.loads((smoke_output / "fig3_summary.json").read_text())

    runs = summary["runs"]
    assert set(runs) == {"linear_regression/fixed_lr", "linear_regression/fixed_norm", "nonlinear_regression/fixed_lr"}
    assert len(runs["linear_regression/fixed_lr"]) == 10
    assert len(runs["nonlinear_regression/fixed_lr"]) == 13
    assert all(entry["status"] == "ok" for group in runs.values() for entry in group.values())
    assert all(math.isfinite(value) for value in _numbers(runs))
    assert runs["nonlinear_regression/fixed_lr"]["SLDI Tr α=0"]["median_angles"]["ndi_angle/layer_1"] >= 0


def test_fig3_every_rule_reduces_error(smoke_output):
    summary = json.loads((smoke_output / "fig3_summary.json").read_text())

    for group in summary["runs"].values():
        for label, entry in group.items():
            assert entry["final_nmse"] < 1.0, label


def test_fig3_data_holds_series(smoke_output):
    data = np.load(smoke_output / "fig3_data.npz")

    values = data["nonlinear_regression/fixed_lr/DI_Tr_alpha0/lambda_max/layer_3/values"]
    assert values.shape == (41,)
    assert np.all(values < 0)


def test_variants_share_data_and_initial_weights(tmp_path):
    specs = build_specs("nonlinear_regression", scale="smoke", seed=7, output_dir=tmp_path)

    assert len({spec.model["init_seed"] for spec in specs}) == 1
    assert all(spec.data_args == specs[0].data_args for spec in specs)
    assert specs[0].data_args["seed"] == 7


def test_fig4_without_mnist_files_stops_before_training(tmp_path, capsys):
    from dilightning.reproduce.__main__ import main as reproduce_main

    empty = tmp_path / "no_data"
    empty.mkdir()

    status = reproduce_main(["fig4", "--scale", "smoke", "--data-dir", str(empty), "--out", str(tmp_path / "out")])

    assert status == 2
    message = capsys.readouterr().err
    assert "error: MNIST files not found" in message
    assert "--download" in message
    assert not (tmp_path / "out" / "fig4.png").exists()
