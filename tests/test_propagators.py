"""Error propagators against autograd and independent numpy recursions (Eqs. 3-4, 17)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dilightning.angles import vector_angle
from dilightning.inversion import get_nonlinearity, max_real_eigenvalue
from dilightning.propagators import PROPAGATORS, ForwardCache, build_propagator
from tests.conftest import conditioned_matrix, uniform_matrix

SIZES = [12, 10, 8, 6]


def _network(generator, sizes=SIZES, scale=None):
    """Random tanh-tanh-linear network weights and a forward cache for a batch of 5 inputs."""
    if scale is None:
        weights = [conditioned_matrix(sizes[i + 1], sizes[i], generator, low=0.4, high=1.0) for i in range(len(sizes) - 1)]
    else:
        weights = [uniform_matrix(sizes[i + 1], sizes[i], generator, scale) for i in range(len(sizes) - 1)]
    biases = [0.1 * torch.randn(size, generator=generator, dtype=torch.float64) for size in sizes[1:]]
    nonlinearities = [get_nonlinearity("tanh")] * (len(sizes) - 2) + [get_nonlinearity("linear")]
    x = torch.randn(5, sizes[0], generator=generator, dtype=torch.float64)
    inputs, pre_activations, h = [], [], x
    for W, b, g in zip(weights, biases, nonlinearities):
        inputs.append(h)
        a = h @ W.T + b
        pre_activations.append(a)
        h = g(a)
    return weights, biases, ForwardCache(inputs, pre_activations, nonlinearities), x


def _numpy_chain(weights, cache, output_error, matrix_for):
    """δ_{l-1} = M_l δ_l ◦ g'(a_{l-1}) with numpy, M_l given per weight index."""
    deltas = [output_error.numpy()]
    for index in range(len(weights) - 1, 0, -1):
        slope = 1.0 - np.tanh(cache.pre_activations[index - 1].numpy()) ** 2
        deltas.insert(0, (matrix_for(index) @ deltas[0].T).T * slope)
    return deltas


def test_bp_matches_autograd(generator):
    weights, biases, _, x = _network(generator)
    weights = [W.clone().requires_grad_() for W in weights]
    target = torch.randn(5, SIZES[-1], generator=generator, dtype=torch.float64)
    pre_activations, h = [], x
    for index, (W, b) in enumerate(zip(weights, biases)):
        a = h @ W.T + b
        a.retain_grad()
        pre_activations.append(a)
        h = torch.tanh(a) if index < len(weights) - 1 else a
    loss = 0.5 * ((h - target) ** 2).sum()
    loss.backward()
    cache = ForwardCache(
        [x] + [torch.tanh(a).detach() for a in pre_activations[:-1]],
        [a.detach() for a in pre_activations],
        [get_nonlinearity("tanh")] * 2 + [get_nonlinearity("linear")],
    )

    deltas = build_propagator("BP", SIZES)([W.detach() for W in weights], cache, (h - target).detach())

    for delta, a in zip(deltas, pre_activations):
        torch.testing.assert_close(delta, a.grad, rtol=1e-12, atol=1e-12)


def test_fa_matches_numpy(generator):
    weights, _, cache, _ = _network(generator)
    error = torch.randn(5, SIZES[-1], generator=generator, dtype=torch.float64)
    propagator = build_propagator("FA", SIZES).double()
    propagator.reset_feedback(weights, torch.Generator().manual_seed(0))

    deltas = propagator(weights, cache, error)

    expected = _numpy_chain(weights, cache, error, lambda i: propagator.feedback(i).numpy())
    for delta, reference in zip(deltas, expected):
        np.testing.assert_allclose(delta.numpy(), reference, rtol=1e-12, atol=1e-12)


def test_pbp_matches_numpy(generator):
    weights, _, cache, _ = _network(generator)
    error = torch.randn(5, SIZES[-1], generator=generator, dtype=torch.float64)

    deltas = build_propagator("PBP", SIZES)(weights, cache, error)

    expected = _numpy_chain(weights, cache, error, lambda i: np.linalg.pinv(weights[i].numpy()))
    for delta, reference in zip(deltas, expected):
        np.testing.assert_allclose(delta.numpy(), reference, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("alpha", [0.0, 1e-2])
def test_ndi_matches_numpy(generator, alpha):
    weights, _, cache, _ = _network(generator)
    error = torch.randn(5, SIZES[-1], generator=generator, dtype=torch.float64)
    propagator = build_propagator("NDI", SIZES, {"alpha": alpha}).double()
    propagator.reset_feedback(weights)

    deltas = propagator(weights, cache, error)

    def matrix_for(index):
        W, B = weights[index].numpy(), -weights[index].numpy().T
        return B @ np.linalg.inv(W @ B - alpha * np.eye(W.shape[0]))

    for delta, reference in zip(deltas, _numpy_chain(weights, cache, error, matrix_for)):
        np.testing.assert_allclose(delta.numpy(), reference, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", ["DI", "RepeatDI"])
def test_dynamic_propagators_follow_ndi(generator, name):
    weights, _, cache, _ = _network(generator)
    error = torch.randn(5, SIZES[-1], generator=generator, dtype=torch.float64)
    options = {"alpha": 1e-2, "steps": 3000}
    dynamic = build_propagator(name, SIZES, options).double()
    reference = build_propagator("NDI", SIZES, {"alpha": 1e-2}).double()
    dynamic.reset_feedback(weights)
    reference.reset_feedback(weights)

    for delta, expected in zip(dynamic(weights, cache, error), reference(weights, cache, error)):
        assert vector_angle(delta, expected).max() < 1.0


def test_di_nonlinear_controller_skips_derivative(generator):
    weights, _, cache, _ = _network(generator)
    error = 0.1 * torch.randn(5, SIZES[-1], generator=generator, dtype=torch.float64)
    propagator = build_propagator("DI", SIZES, {"alpha": 1e-2, "nonlinear_controller": True}).double()
    propagator.reset_feedback(weights)

    deltas = propagator(weights, cache, error)

    # The nonlinear controller's fixed point satisfies W tanh(δ_{l-1}) = δ_l + α u (Eq. 15) for the
    # square-ish top layer, so tanh(δ_2) maps back close to δ_3 with no g'(a_2) factor.
    readout = torch.tanh(deltas[-2]) @ weights[-1].T
    assert vector_angle(readout, error).max() < 5.0


def test_tr_init_buffers(generator):
    weights, _, _, _ = _network(generator)
    propagator = build_propagator("DI", SIZES).double()

    propagator.reset_feedback(weights)

    for index in range(1, len(weights)):
        assert torch.equal(propagator.feedback(index), -weights[index].T)


def test_scaled_transpose_init(generator):
    weights, _, _, _ = _network(generator)
    propagator = build_propagator("FA", SIZES, {"feedback_init": "scaled_tr", "feedback_gain": 50.0}).double()

    propagator.reset_feedback(weights)

    torch.testing.assert_close(propagator.feedback(2), -50.0 * weights[2].T)


def test_fa_random_init_range_and_seed(generator):
    weights, _, _, _ = _network(generator)
    first = build_propagator("FA", SIZES)
    second = build_propagator("FA", SIZES)

    first.reset_feedback([w.float() for w in weights], torch.Generator().manual_seed(7))
    second.reset_feedback([w.float() for w in weights], torch.Generator().manual_seed(7))

    assert first.feedback(1).abs().max() <= 0.5
    assert first.feedback(1).abs().max() > 0.3
    assert torch.equal(first.feedback(1), second.feedback(1))


@pytest.mark.parametrize("name", ["NDI", "DI"])
def test_random_init_is_stabilized(generator, name):
    weights, _, _, _ = _network(generator, scale=0.01)
    propagator = build_propagator(name, SIZES, {"feedback_init": "random"}).double()

    propagator.reset_feedback(weights, torch.Generator().manual_seed(3))

    for index in range(1, len(weights)):
        assert max_real_eigenvalue(weights[index], propagator.feedback(index), 0.0) < -0.01


def test_sldi_tr_init_loop(generator):
    weights, _, _, _ = _network(generator)
    propagator = build_propagator("SLDI", SIZES).double()

    propagator.reset_feedback(weights)

    torch.testing.assert_close(propagator.feedback_loop, -weights[1].T @ weights[2].T)


def test_sldi_random_init_is_stable(generator):
    weights, _, _, _ = _network(generator, sizes=[30, 20, 10, 10], scale=0.01)
    propagator = build_propagator("SLDI", [30, 20, 10, 10], {"feedback_init": "random"}).double()

    propagator.reset_feedback(weights, torch.Generator().manual_seed(0))

    assert propagator.max_real_eigenvalues(weights)["loop"] < 0


def test_restabilize_repairs_unstable_layer(generator):
    weights, _, _, _ = _network(generator, scale=0.01)
    propagator = build_propagator("DI", SIZES).double()
    propagator.reset_feedback(weights)
    propagator.set_feedback(2, -propagator.feedback(2))  # flip the sign: W B becomes positive definite

    repaired = propagator.restabilize(weights)

    assert repaired == ["layer_3"]
    assert propagator.restabilization_count == 1
    assert propagator.max_real_eigenvalues(weights)["layer_3"] < 0


def test_feedback_saved_in_state_dict(generator):
    weights, _, _, _ = _network(generator)
    propagator = build_propagator("SLDI", SIZES).double()
    propagator.reset_feedback(weights)
    restored = build_propagator("SLDI", SIZES).double()

    restored.load_state_dict(propagator.state_dict())

    assert set(propagator.state_dict()) == {"feedback_2", "feedback_3", "feedback_loop", "restabilizations"}
    assert torch.equal(restored.feedback_loop, propagator.feedback_loop)


@pytest.mark.parametrize("name", sorted(PROPAGATORS))
def test_max_delta_norm_clips_hidden_errors(generator, name):
    weights, _, cache, _ = _network(generator)
    error = 10.0 * torch.randn(5, SIZES[-1], generator=generator, dtype=torch.float64)
    options = {"max_delta_norm": 0.5}
    if name not in ("BP", "FA", "PBP"):
        options["alpha"] = 1e-2
    clipped = build_propagator(name, SIZES, options).double()
    free = build_propagator(name, SIZES, {key: value for key, value in options.items() if key != "max_delta_norm"})
    free = free.double()
    clipped.reset_feedback(weights, torch.Generator().manual_seed(0))
    free.reset_feedback(weights, torch.Generator().manual_seed(0))

    clipped_deltas = clipped(weights, cache, error)
    free_deltas = free(weights, cache, error)

    for delta, unclipped in zip(clipped_deltas[:-1], free_deltas[:-1]):
        assert torch.linalg.vector_norm(delta, dim=-1).max() <= 0.5 + 1e-12
        assert vector_angle(delta, unclipped).max() < 1e-4  # arccos resolves about 1e-6 degrees
    assert torch.equal(clipped_deltas[-1], error)


def test_unused_option_is_ignored_with_warning(caplog):
    propagator = build_propagator("BP", SIZES, {"alpha": 0.1})

    assert "does not use option alpha" in caplog.text
    assert propagator.name == "BP"


def test_vector_angle_known_values():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 2.0], [-3.0, 0.0], [2.0, 2.0], [1.0, 1e-6]])

    angles = vector_angle(a, b)

    torch.testing.assert_close(angles[:3], torch.tensor([90.0, 180.0, 0.0], dtype=torch.float64))
    assert abs(float(angles[3]) - np.degrees(1e-6)) < 1e-9  # resolved far below arccos's limit


def test_matrix_angle_frobenius():
    from dilightning.angles import matrix_angle

    first = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    second = torch.tensor([[1.0, 0.0], [0.0, -1.0]])

    assert matrix_angle(first, second) == pytest.approx(90.0)
    assert matrix_angle(first, 2 * first) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("expanding_controller", [False, True])
def test_di_closed_form_wide_layers(generator, expanding_controller):
    # Loops above 16 units and a batch of 5: the errors go through each loop's eigenvectors.
    sizes = [30, 40, 24, 36]
    weights, _, cache, _ = _network(generator, sizes)
    output_error = torch.randn(5, sizes[-1], generator=generator, dtype=torch.float64)
    options = {"alpha": 1e-2, "feedback_init": "tr", "expanding_controller": expanding_controller, "steps": 600}
    closed = build_propagator("DI", sizes, options).double()
    euler = build_propagator("DI", sizes, {**options, "method": "euler"}).double()
    closed.reset_feedback(weights)
    euler.reset_feedback(weights)

    for a, b in zip(closed(weights, cache, output_error), euler(weights, cache, output_error)):
        relative = torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)
        assert relative <= 1e-7
