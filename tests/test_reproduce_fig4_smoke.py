"""``python -m dilightning.reproduce fig4 --scale smoke`` on the real MNIST files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dilightning.reproduce.__main__ import main
from tests.conftest import MNIST_ROOT

pytestmark = pytest.mark.skipif(
    not (MNIST_ROOT / "MNIST" / "raw").is_dir(), reason=f"MNIST files not found in {MNIST_ROOT / 'MNIST' / 'raw'}"
)


@pytest.fixture(scope="module")
def smoke_output(tmp_path_factory):
    out = tmp_path_factory.mktemp("fig4")
    assert main(["fig4", "--scale", "smoke", "--out", str(out), "--data-dir", str(MNIST_ROOT), "--workers", "2"]) == 0
    return out


def test_fig4_outputs_exist(smoke_output):
    for name in ("fig4.png", "fig4.pdf", "fig4_summary.json", "fig4_data.npz"):
        assert (smoke_output / name).stat().st_size > 0


def test_fig4_summary_reports_every_variant(smoke_output):
    summary = json.loads((smoke_output / "fig4_summary.json").read_text())

    classification = summary["runs"]["mnist_classification"]
    autoencoder = summary["runs"]["mnist_autoencoder"]
    assert len(classification) == 7
    assert len(autoencoder) == 14  # 7 rules from uniform and from orthogonal weights
    assert all(entry["status"] == "ok" for entry in [*classification.values(), *autoencoder.values()])
    assert all(0 <= entry["final_test_error_percent"] <= 100 for entry in classification.values())
    assert all(math.isfinite(entry["final_training_error"]) for entry in autoencoder.values())
    assert classification["BP"]["paper_test_error_percent"] == 2.2


def test_fig4_data_has_codes_and_embeddings(smoke_output):
    data = np.load(smoke_output / "fig4_data.npz")

    codes = data["mnist_autoencoder/DI_alpha1e-3/artifacts/codes"]
    assert codes.shape[1] == 30
    assert data["mnist_autoencoder/DI_alpha1e-3/tsne"].shape == (codes.shape[0], 2)
    assert data["mnist_autoencoder/BP_orth./artifacts/outputs"].shape == (10, 784)


def test_unknown_scale_for_fig3_is_rejected(capsys):
    assert main(["fig3", "--scale", "quick"]) == 2
    assert "fig3 has no 'quick' scale" in capsys.readouterr().err
