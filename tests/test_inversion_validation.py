"""Bad arguments raise ValueError naming the argument, the value and the fix."""

from __future__ import annotations

import pytest
import torch

from dilightning.inversion import (
    dynamic_inversion,
    get_nonlinearity,
    non_dynamic_inversion,
    pseudo_inverse,
    repeat_layer_inversion,
    single_loop_inversion,
    system_matrix,
)
from dilightning.propagators import build_propagator

W = torch.zeros(3, 5)
B = torch.zeros(5, 3)
DELTA = torch.zeros(2, 3)


def test_feedback_shape_mismatch():
    with pytest.raises(ValueError, match=r"B has shape \(3, 5\).*must be .*\(5, 3\)"):
        dynamic_inversion(W, torch.zeros(3, 5), DELTA, 0.0)


def test_delta_shape_mismatch():
    with pytest.raises(ValueError, match=r"delta has shape \(2, 4\).*W.shape\[0\] = 3"):
        non_dynamic_inversion(W, B, torch.zeros(2, 4), 0.0)


def test_weight_not_matrix():
    with pytest.raises(ValueError, match="W must be a 2-D matrix"):
        pseudo_inverse(torch.zeros(3), DELTA)


@pytest.mark.parametrize("alpha", [-0.1, float("nan"), float("inf")])
def test_negative_or_invalid_alpha(alpha):
    with pytest.raises(ValueError, match=r"alpha \(controller leak\) must be a finite number >= 0"):
        dynamic_inversion(W, B, DELTA, alpha)


@pytest.mark.parametrize("dt", [0.0, -0.5])
def test_nonpositive_dt(dt):
    with pytest.raises(ValueError, match=r"dt \(Euler time step\) must be .* > 0, got"):
        dynamic_inversion(W, B, DELTA, 0.0, dt=dt)


@pytest.mark.parametrize("steps", [0, -3, 2.5])
def test_invalid_steps(steps):
    with pytest.raises(ValueError, match=r"steps \(number of Euler updates\) must be an integer >= 1"):
        dynamic_inversion(W, B, DELTA, 0.0, steps=steps)


def test_unknown_nonlinearity():
    with pytest.raises(ValueError, match=r"unknown nonlinearity 'softplus'; valid choices are"):
        dynamic_inversion(W, B, DELTA, 0.0, nonlinearity="softplus")


def test_unknown_nonlinearity_name_lookup():
    with pytest.raises(ValueError, match="valid choices are .*'tanh'"):
        get_nonlinearity("tahn")


def test_closed_form_rejects_nonlinear_controller():
    with pytest.raises(ValueError, match="method='closed_form' needs a linear controller"):
        dynamic_inversion(W, B, DELTA, 0.0, nonlinearity="tanh", method="closed_form")


def test_unknown_controller_and_method():
    with pytest.raises(ValueError, match="unknown controller 'fast'"):
        dynamic_inversion(W, B, DELTA, 0.0, controller="fast")
    with pytest.raises(ValueError, match="unknown method 'rk4'"):
        dynamic_inversion(W, B, DELTA, 0.0, method="rk4")


def test_dtype_mismatch():
    with pytest.raises(ValueError, match="delta has dtype torch.float64 but W has torch.float32"):
        dynamic_inversion(W, B, DELTA.double(), 0.0)


def test_chain_shapes_must_connect():
    with pytest.raises(ValueError, match=r"output size 4 must equal the next input size 6"):
        single_loop_inversion([torch.zeros(4, 5), torch.zeros(3, 6)], torch.zeros(5, 3), torch.zeros(1, 3), 0.0,
                              nonlinearities="tanh")


def test_single_loop_feedback_shape():
    with pytest.raises(ValueError, match=r"must be \(d_1, d_L\) = \(5, 3\)"):
        single_loop_inversion([torch.zeros(4, 5), torch.zeros(3, 4)], torch.zeros(4, 3), torch.zeros(1, 3), 0.0,
                              nonlinearities="tanh")


def test_single_loop_zero_derivative():
    weights = [torch.eye(2), torch.eye(2)]
    with pytest.raises(ValueError, match="derivatives\\[0\\] contains zeros"):
        single_loop_inversion(weights, -torch.eye(2), torch.ones(1, 2), 0.0, nonlinearities="relu",
                              derivatives=[torch.tensor([[0.0, 1.0]]), torch.ones(1, 2)])


def test_repeat_layer_needs_one_feedback_per_weight():
    with pytest.raises(ValueError, match="feedbacks has 1 entries but weights has 2"):
        repeat_layer_inversion([torch.zeros(4, 5), torch.zeros(3, 4)], [torch.zeros(5, 4)], torch.zeros(1, 3), 0.0)


def test_system_matrix_negative_alpha():
    with pytest.raises(ValueError, match="alpha"):
        system_matrix(W, B, -1.0)


def test_unknown_feedback_initialization():
    with pytest.raises(ValueError, match=r"unknown feedback_init 'transpose'; valid choices are \['tr', 'scaled_tr', 'random'\]"):
        build_propagator("DI", [5, 4, 3], {"feedback_init": "transpose"})


def test_unknown_propagator():
    with pytest.raises(ValueError, match=r"unknown propagator 'TP'; valid choices are \['BP', 'FA'"):
        build_propagator("TP", [5, 4, 3])


def test_unknown_propagator_option():
    with pytest.raises(ValueError, match="unknown propagator option 'leak'"):
        build_propagator("DI", [5, 4, 3], {"leak": 0.1})


def test_propagator_negative_alpha():
    with pytest.raises(ValueError, match="alpha"):
        build_propagator("NDI", [5, 4, 3], {"alpha": -1.0})
