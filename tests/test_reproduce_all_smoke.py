"""``reproduce all --scale smoke`` writes every figure, Table 1 and a filled REPORT.md; runs resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dilightning.reproduce.__main__ import main
from dilightning.reproduce.report import CLAIMS
from tests.conftest import MNIST_ROOT

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report_output(tmp_path_factory):
    out = tmp_path_factory.mktemp("all")
    assert main(["all", "--scale", "smoke", "--out", str(out), "--data-dir", str(MNIST_ROOT), "--workers", "2"]) == 0
    return out


def test_all_writes_every_output(report_output):
    for name in ("fig3.png", "figS5.png", "table1.md", "REPORT.md", "report_summary.json"):
        assert (report_output / name).is_file(), name
    if (MNIST_ROOT / "MNIST" / "raw").is_dir():
        assert (report_output / "fig4.png").is_file()


def test_report_has_a_row_per_claim(report_output):
    text = (report_output / "REPORT.md").read_text()
    summary = json.loads((report_output / "report_summary.json").read_text())

    for claim in CLAIMS:
        assert f"| {claim.name} |" in text
    measured = [name for name, claim in summary["claims"].items() if claim["measured"] != "not measured"]
    expected = len(CLAIMS) if (MNIST_ROOT / "MNIST" / "raw").is_dir() else len([c for c in CLAIMS if c.needs != "fig4"])
    assert len(measured) == expected


def test_figs5_summary_angles(report_output):
    summary = json.loads((report_output / "figS5_summary.json").read_text())

    linear = summary["runs"]["contracting (20 → 10)"]["linear"]
    assert linear["median_readout_angle"]["0.001"] < 5.0  # accurate at a small leak
    assert linear["median_readout_angle"]["0.1"] > linear["median_readout_angle"]["0.001"]
    assert linear["median_inverse_angle"]["0.001"] < 1.0  # DI reaches the explicit inversion of Eq. 17


def test_interrupted_run_resumes_from_finished_runs(tmp_path):
    command = [sys.executable, "-m", "dilightning.reproduce", "fig3", "--scale", "smoke", "--out", str(tmp_path),
               "--workers", "1"]
    cache = tmp_path / "runs" / "cache"
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(list(cache.glob("*.npz"))) < 3:
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = {path.name for path in cache.glob("*.npz") if not path.name.endswith(".partial.npz")}
    assert 3 <= len(finished) < 33

    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=True)

    assert f"loaded {len(finished)} finished runs" in rerun.stderr
    assert (tmp_path / "fig3_summary.json").is_file()
    assert {path.name for path in cache.glob("*.npz")} >= finished


def test_fresh_runs_retrain_and_refresh_the_cache(tmp_path):
    from dilightning.reproduce.experiment import build_specs
    from dilightning.reproduce.runner import load_result, run_specs

    spec = build_specs("linear_regression", scale="smoke", seed=0, output_dir=tmp_path)[0]
    cache = tmp_path / "cache"
    first = run_specs([spec], workers=1, cache_dir=cache)[0]

    second = run_specs([spec], workers=1, cache_dir=cache, load_cached=False)[0]

    assert second.seconds != first.seconds  # trained again, not loaded
    assert load_result(spec, cache).seconds == second.seconds  # and stored over the old result
