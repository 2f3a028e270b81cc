"""Shared fixtures: seeded generators and well-conditioned random matrices."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

MNIST_ROOT = Path(os.environ.get("DILIGHTNING_MNIST_ROOT", Path(__file__).resolve().parents[1].parent / "shared" / "data"))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def conditioned_matrix(
    rows: int,
    columns: int,
    generator: torch.Generator,
    *,
    low: float = 0.2,
    high: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Return a random ``rows × columns`` matrix whose singular values are spread over ``[low, high]``."""
    left, _ = torch.linalg.qr(torch.randn(rows, rows, generator=generator, dtype=torch.float64))
    right, _ = torch.linalg.qr(torch.randn(columns, columns, generator=generator, dtype=torch.float64))
    rank = min(rows, columns)
    singular = torch.zeros(rows, columns, dtype=torch.float64)
    singular[range(rank), range(rank)] = torch.linspace(low, high, rank, dtype=torch.float64)
    return (left @ singular @ right.T).to(dtype)


def uniform_matrix(
    rows: int, columns: int, generator: torch.Generator, scale: float, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Return a ``rows × columns`` matrix with entries drawn from ``U(−scale, scale)``."""
    return ((2 * torch.rand(rows, columns, generator=generator, dtype=torch.float64) - 1) * scale).to(dtype)
