"""A training run killed mid-epoch and resumed from its last checkpoint ends exactly like an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

SCRIPT = Path(__file__).with_name("resume_training.py")
ROOT = Path(__file__).resolve().parents[1]


def _run(out: Path, mode: str) -> dict:
    subprocess.run([sys.executable, str(SCRIPT), str(out), "--mode", mode], cwd=ROOT, check=True, timeout=300)
    return torch.load(out / f"result_{mode}.pt")


def test_killed_run_resumes_exactly(tmp_path):
    full = _run(tmp_path / "full", "full")

    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen([sys.executable, str(SCRIPT), str(interrupted), "--mode", "interrupted"], cwd=ROOT)
    checkpoints = interrupted / "checkpoints"
    deadline = time.time() + 240
    # Kill after the checkpoint at update 40 (the middle of the first epoch of 120 examples).
    while time.time() < deadline and not list(checkpoints.glob("*step=40*.ckpt")):
        time.sleep(0.05)
    time.sleep(0.4)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (interrupted / "result_interrupted.pt").exists()
    assert (checkpoints / "last.ckpt").is_file()

    resumed = _run(interrupted, "resume")

    assert resumed["global_step"] == full["global_step"] == 240
    for name, value in full["state"].items():
        assert torch.equal(resumed["state"][name], value), name
    assert resumed["series"] == full["series"]
    assert resumed["metrics"] == full["metrics"]
