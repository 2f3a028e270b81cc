"""DDP on two CPU processes synchronizes the propagated updates exactly like gradients."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("ddp_training.py")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    for devices in (2, 1):
        subprocess.run(
            [sys.executable, str(SCRIPT), str(out), "--devices", str(devices), "--propagator", "DI"],
            check=True,
            cwd=ROOT,
            timeout=300,
        )
    loaded = {path.stem: torch.load(path) for path in out.glob("*.pt")}
    loaded["stability_csv"] = out / "root_devices2" / "stability.csv"
    return loaded


def test_both_ranks_hold_identical_weights(weights):
    rank0, rank1 = weights["weights_devices2_rank0"], weights["weights_devices2_rank1"]

    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name


def test_ddp_series_callback_saves_its_csv(weights):
    assert weights["stability_csv"].is_file()


def test_ddp_equals_single_process_on_combined_batches(weights):
    ddp, single = weights["weights_devices2_rank0"], weights["weights_devices1_rank0"]

    for name in ddp:
        torch.testing.assert_close(ddp[name], single[name], rtol=1e-10, atol=1e-12)
