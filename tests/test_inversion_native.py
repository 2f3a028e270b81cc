"""The compiled Euler kernels reproduce the PyTorch Euler loops."""

from __future__ import annotations

import pytest
import torch

from dilightning.inversion import dynamic_inversion, native, single_loop_inversion
from tests.conftest import conditioned_matrix

pytestmark = pytest.mark.skipif(not native.available(torch.zeros(1)), reason="no C compiler to build the kernels")


@pytest.fixture
def torch_loop(monkeypatch):
    """Run the body with the compiled kernels switched off."""

    def run(function, *args, **kwargs):
        with monkeypatch.context() as patch:
            patch.setattr(native, "available", lambda *tensors: False)
            return function(*args, **kwargs)

    return run


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("nonlinearity", ["linear", "tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("controller", ["standard", "expanding"])
def test_dynamic_inversion_kernel_matches_torch(generator, torch_loop, dtype, nonlinearity, controller):
    W = conditioned_matrix(7, 11, generator).to(dtype)
    B = -W.T.clone()
    delta = 0.5 * torch.randn(4, 7, generator=generator, dtype=torch.float64).to(dtype)
    options = {"dt": 0.5, "steps": 300, "nonlinearity": nonlinearity, "controller": controller, "method": "euler"}

    compiled = dynamic_inversion(W, B, delta, 0.01, **options)
    reference = torch_loop(dynamic_inversion, W, B, delta, 0.01, **options)

    tolerance = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(compiled, reference, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("linearized", [False, True])
def test_single_loop_kernel_matches_torch(generator, torch_loop, dtype, linearized):
    weights = [
        conditioned_matrix(10, 20, generator, low=0.3, high=1.0).to(dtype),
        conditioned_matrix(6, 10, generator, low=0.3, high=1.0).to(dtype),
        conditioned_matrix(4, 6, generator, low=0.3, high=1.0).to(dtype),
    ]
    B = -(weights[2] @ weights[1] @ weights[0]).T.contiguous()
    delta = 0.3 * torch.randn(3, 4, generator=generator, dtype=torch.float64).to(dtype)
    slopes = None
    if linearized:
        slopes = [0.5 + 0.5 * torch.rand(3, w.shape[1], generator=generator, dtype=torch.float64).to(dtype) for w in weights]
    options = {"nonlinearities": ["tanh", "sigmoid", "tanh"], "steps": 400, "derivatives": slopes}

    compiled = single_loop_inversion(weights, B, delta, 0.01, **options)
    reference = torch_loop(single_loop_inversion, weights, B, delta, 0.01, **options)

    tolerance = 1e-10 if dtype == torch.float64 else 1e-4
    for ours, theirs in zip(compiled, reference):
        torch.testing.assert_close(ours, theirs, rtol=tolerance, atol=tolerance)


def test_single_loop_kernel_shared_slope_row(generator, torch_loop):
    weights = [conditioned_matrix(5, 8, generator), conditioned_matrix(3, 5, generator)]
    B = -(weights[1] @ weights[0]).T.contiguous()
    delta = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    slopes = [torch.full((1, 8), 0.7, dtype=torch.float64), torch.full((1, 5), 0.9, dtype=torch.float64)]

    compiled = single_loop_inversion(weights, B, delta, 0.0, nonlinearities="tanh", derivatives=slopes, steps=200)
    reference = torch_loop(single_loop_inversion, weights, B, delta, 0.0, nonlinearities="tanh", derivatives=slopes, steps=200)

    for ours, theirs in zip(compiled, reference):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
