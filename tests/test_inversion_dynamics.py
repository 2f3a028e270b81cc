"""Dynamic inversion: Euler update order, convergence to NDI, and the closed form against the loop."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from dilightning.angles import vector_angle
from dilightning.inversion import dynamic_inversion, dynamic_inversion_matrix, non_dynamic_inversion
from tests.conftest import DEVICES, conditioned_matrix, uniform_matrix

HAND_W = [[1.0, 2.0]]
HAND_B = [[1.0], [-1.0]]
HAND_DELTA = [2.0]


@pytest.mark.parametrize(("steps", "expected"), [(1, [0.0, 0.0]), (2, [-0.5, 0.5]), (3, [-1.0, 1.0])])
def test_euler_hand_example_standard(steps, expected):
    # Worked by hand with W = [1 2], B = [1 −1]ᵀ, δ_l = 2, α = 0.5, dt = 0.5, state first, then control:
    # step 1: δ = 0, u = −1; step 2: δ = (−0.5, 0.5), u = −1.5; step 3: δ = (−1, 1), u = −1.625.
    W, B, delta = torch.tensor(HAND_W), torch.tensor(HAND_B), torch.tensor(HAND_DELTA)

    result = dynamic_inversion(W, B, delta, 0.5, dt=0.5, steps=steps, method="euler")

    assert torch.equal(result, torch.tensor(expected))


@pytest.mark.parametrize(("steps", "expected"), [(1, [-1.0, 1.0]), (2, [-1.5, 1.5])])
def test_euler_hand_example_expanding(steps, expected):
    # Eqs. S1-S2 with the same numbers: step 1: δ = (−1, 1), δ̃ = 0.5; step 2: δ = (−1.5, 1.5), δ̃ = 1.
    W, B, delta = torch.tensor(HAND_W), torch.tensor(HAND_B), torch.tensor(HAND_DELTA)

    result = dynamic_inversion(W, B, delta, 0.5, dt=0.5, steps=steps, method="euler", controller="expanding")

    assert torch.equal(result, torch.tensor(expected))


@pytest.mark.parametrize("steps", [1, 2, 3, 17])
def test_closed_form_hand_example(steps):
    W, B, delta = torch.tensor(HAND_W, dtype=torch.float64), torch.tensor(HAND_B, dtype=torch.float64), torch.tensor(
        HAND_DELTA, dtype=torch.float64
    )

    euler = dynamic_inversion(W, B, delta, 0.5, dt=0.5, steps=steps, method="euler")
    closed = dynamic_inversion(W, B, delta, 0.5, dt=0.5, steps=steps, method="closed_form")

    torch.testing.assert_close(closed, euler, rtol=1e-12, atol=1e-12)


def _reference_nonlinear_euler(W, B, delta, alpha, dt, steps):
    """Algorithm 1 written out with numpy, one vector at a time."""
    W, B, delta = W.numpy(), B.numpy(), delta.numpy()
    state, control = np.zeros(W.shape[1]), np.zeros(W.shape[0])
    for _ in range(steps):
        state = state + dt * (-state + B @ control)
        control = control + dt * (-alpha * control + W @ np.tanh(state) - delta)
    return state


def test_nonlinear_controller_matches_reference(generator):
    W = conditioned_matrix(5, 8, generator)
    B = -W.T
    delta = 0.3 * torch.randn(3, 5, generator=generator, dtype=torch.float64)

    result = dynamic_inversion(W, B, delta, 0.01, dt=0.5, steps=200, nonlinearity="tanh")

    for row in range(3):
        expected = _reference_nonlinear_euler(W, B, delta[row], 0.01, 0.5, 200)
        np.testing.assert_allclose(result[row].numpy(), expected, rtol=1e-10, atol=1e-12)


def test_nonlinear_controller_inverts_tanh(generator):
    W = conditioned_matrix(5, 8, generator)
    source = 0.5 * torch.randn(4, 8, generator=generator, dtype=torch.float64)
    delta = torch.tanh(source) @ W.T  # reachable: W tanh(x) = δ has solutions

    result = dynamic_inversion(W, -W.T, delta, 0.0, steps=5000, nonlinearity="tanh")

    np.testing.assert_allclose((torch.tanh(result) @ W.T).numpy(), delta.numpy(), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("alpha", [0.0, 1e-3, 1e-2])
@pytest.mark.parametrize(("name", "shape"), [("square", (20, 20)), ("contracting", (10, 20))])
def test_di_converges_to_ndi(generator, name, shape, alpha):
    W = conditioned_matrix(*shape, generator)
    delta = torch.randn(50, shape[0], generator=generator, dtype=torch.float64)

    di = dynamic_inversion(W, -W.T, delta, alpha, dt=0.5, steps=1000, method="euler")
    ndi = non_dynamic_inversion(W, -W.T, delta, alpha)

    assert vector_angle(di, ndi).max() < 1.0


@pytest.mark.parametrize("alpha", [1e-3, 1e-2])
def test_di_expanding_converges_to_ndi(generator, alpha):
    W = conditioned_matrix(20, 10, generator)
    delta = torch.randn(50, 20, generator=generator, dtype=torch.float64)

    di = dynamic_inversion(W, -W.T, delta, alpha, dt=0.5, steps=1000, method="euler")
    ndi = non_dynamic_inversion(W, -W.T, delta, alpha)

    assert vector_angle(di, ndi).max() < 1.0


def test_di_expanding_zero_leak_tr_init_reaches_pseudoinverse(generator):
    # At α = 0 the standard controller is only marginally stable for an expanding layer, but with
    # B = −Wᵀ the drifting part of u lies in the null space of Wᵀ and never reaches δ_{l-1}.
    W = conditioned_matrix(20, 10, generator)
    delta = torch.randn(50, 20, generator=generator, dtype=torch.float64)

    di = dynamic_inversion(W, -W.T, delta, 0.0, dt=0.5, steps=1000, method="euler")
    expected = delta @ torch.linalg.pinv(W).T

    assert vector_angle(di, expected).max() < 1e-3


def test_expanding_controller_zero_leak_converges(generator):
    W = conditioned_matrix(20, 10, generator)
    delta = torch.randn(50, 20, generator=generator, dtype=torch.float64)

    di = dynamic_inversion(W, -W.T, delta, 0.0, controller="expanding", method="euler")
    expected = delta @ torch.linalg.pinv(W).T

    assert vector_angle(di, expected).max() < 1e-3


# Closed form against the step-by-step loop: stable, marginally stable and expanding systems.
AGREEMENT_CASES = [
    # (d_l, d_{l-1}, alpha, controller, feedback)
    (10, 20, 0.0, "standard", "tr"),
    (20, 20, 1e-2, "standard", "tr"),
    (20, 10, 1e-3, "standard", "tr"),
    (20, 10, 0.0, "standard", "tr"),  # marginally stable: eigenvalue exactly 0
    (20, 10, 0.0, "expanding", "tr"),
    (10, 20, 1e-2, "expanding", "tr"),
    (7, 3, 0.0, "expanding", "tr"),
    (10, 20, 0.0, "standard", "small"),  # paper-scale U(−0.01, 0.01), barely stable
    (12, 12, 0.0, "standard", "small"),
    (3, 30, 1e-2, "standard", "random"),
    (1, 5, 0.0, "standard", "tr"),
    (5, 1, 1e-2, "standard", "tr"),
    # Loops above 16 dimensions go through the eigendecomposition.
    (40, 60, 0.0, "standard", "tr"),
    (60, 40, 1e-3, "standard", "tr"),
    (60, 40, 0.0, "expanding", "tr"),
    (25, 50, 1e-2, "expanding", "tr"),
    (30, 30, 0.0, "standard", "small"),
    (24, 40, 1e-2, "standard", "random"),
]


def _agreement_system(case, generator, dtype):
    d_l, d_prev, alpha, controller, feedback = case
    if feedback == "small":
        W = uniform_matrix(d_l, d_prev, generator, 0.01)
        B = -W.T
    else:
        W = conditioned_matrix(d_l, d_prev, generator)
        B = -W.T if feedback == "tr" else 0.3 * conditioned_matrix(d_prev, d_l, generator)
    delta = torch.randn(8, d_l, generator=generator, dtype=torch.float64)
    return W.to(dtype), B.to(dtype), delta.to(dtype), alpha, controller


@pytest.mark.parametrize("case", AGREEMENT_CASES, ids=lambda case: "-".join(map(str, case)))
def test_closed_form_matches_euler_float64(generator, case):
    W, B, delta, alpha, controller = _agreement_system(case, generator, torch.float64)

    euler = dynamic_inversion(W, B, delta, alpha, controller=controller, method="euler")
    closed = dynamic_inversion(W, B, delta, alpha, controller=controller, method="closed_form")

    relative = torch.linalg.vector_norm(closed - euler) / torch.linalg.vector_norm(euler)
    assert relative <= 1e-6


@pytest.mark.parametrize("case", AGREEMENT_CASES, ids=lambda case: "-".join(map(str, case)))
def test_closed_form_matches_euler_float32(generator, case):
    W, B, delta, alpha, controller = _agreement_system(case, generator, torch.float32)

    euler = dynamic_inversion(W, B, delta, alpha, controller=controller, method="euler")
    closed = dynamic_inversion(W, B, delta, alpha, controller=controller, method="closed_form")

    assert closed.dtype == torch.float32
    assert vector_angle(closed.double(), euler.double()).max() < 0.1


@pytest.mark.parametrize("seed", range(6))
def test_closed_form_random_shapes(seed):
    generator = torch.Generator().manual_seed(seed)
    d_l, d_prev = (int(v) for v in torch.randint(1, 40, (2,), generator=generator))
    alpha = [0.0, 1e-3, 1e-2, 0.1][seed % 4] if d_l <= d_prev else [1e-3, 1e-2, 0.1][seed % 3]
    W = conditioned_matrix(d_l, d_prev, generator, low=0.1, high=1.2)
    delta = torch.randn(4, d_l, generator=generator, dtype=torch.float64)
    steps = int(torch.randint(1, 1500, (1,), generator=generator))

    euler = dynamic_inversion(W, -W.T, delta, alpha, steps=steps, method="euler")
    closed = dynamic_inversion(W, -W.T, delta, alpha, steps=steps, method="closed_form")

    relative = torch.linalg.vector_norm(closed - euler) / torch.linalg.vector_norm(euler)
    assert relative <= 1e-6


def test_closed_form_nearly_defective_loop(generator):
    # A Jordan-like loop product makes the eigenvectors ill-conditioned; the dense route must take over.
    size = 24  # above the size where the dense route is used anyway
    W = torch.eye(size, dtype=torch.float64) + torch.diag(torch.ones(size - 1, dtype=torch.float64), 1)
    B = -0.3 * torch.eye(size, dtype=torch.float64)
    delta = torch.randn(3, size, generator=generator, dtype=torch.float64)

    euler = dynamic_inversion(W, B, delta, 0.0, steps=300, method="euler")
    closed = dynamic_inversion(W, B, delta, 0.0, steps=300, method="closed_form")

    torch.testing.assert_close(closed, euler, rtol=1e-8, atol=1e-10)


def test_closed_form_matrix_is_linear_map(generator):
    W = conditioned_matrix(6, 9, generator)
    delta = torch.randn(5, 6, generator=generator, dtype=torch.float64)

    P = dynamic_inversion_matrix(W, -W.T, 0.01, steps=400)

    expected = dynamic_inversion(W, -W.T, delta, 0.01, steps=400, method="euler")
    torch.testing.assert_close(delta @ P.T, expected, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("method", ["euler", "closed_form"])
def test_batched_equals_per_sample(generator, method):
    W = conditioned_matrix(6, 9, generator)
    delta = torch.randn(2, 3, 6, generator=generator, dtype=torch.float64)

    batched = dynamic_inversion(W, -W.T, delta, 0.01, steps=300, method=method)

    assert batched.shape == (2, 3, 9)
    for i in range(2):
        for j in range(3):
            single = dynamic_inversion(W, -W.T, delta[i, j], 0.01, steps=300, method=method)
            torch.testing.assert_close(batched[i, j], single, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["euler", "closed_form"])
def test_dtype_and_device_preserved(generator, device, dtype, method):
    W = conditioned_matrix(6, 9, generator).to(device=device, dtype=dtype)
    delta = torch.randn(4, 6, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)

    result = dynamic_inversion(W, -W.T, delta, 0.01, method=method)
    reference = non_dynamic_inversion(W.double().cpu(), -W.double().cpu().T, delta.double().cpu(), 0.01)

    assert result.dtype == dtype
    assert result.device.type == device
    assert vector_angle(result.double().cpu(), reference).max() < 0.1


@pytest.mark.parametrize("controller", ["standard", "expanding"])
@pytest.mark.parametrize("shape", [(8, 12), (12, 8)])
def test_modal_and_dense_routes_agree(generator, monkeypatch, controller, shape):
    from dilightning.inversion import closed_form

    W = conditioned_matrix(*shape, generator)
    dense = dynamic_inversion_matrix(W, -W.T, 1e-3, controller=controller)
    monkeypatch.setattr(closed_form, "MAX_DENSE_SIZE", 0)

    modal = dynamic_inversion_matrix(W, -W.T, 1e-3, controller=controller)

    torch.testing.assert_close(modal, dense, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("kind", ["random", "complex", "ill_conditioned"])
def test_inverse_norm_estimate_bounds_numpy(generator, kind):
    from dilightning.inversion.closed_form import _inverse_one_norm_estimate

    size = 30
    A = torch.randn(size, size, generator=generator, dtype=torch.float64)
    if kind == "complex":
        A = torch.complex(A, torch.randn(size, size, generator=generator, dtype=torch.float64))
    elif kind == "ill_conditioned":
        A = conditioned_matrix(size, size, generator, low=1e-6, high=1.0)
    lu, pivots = torch.linalg.lu_factor(A)

    estimate = _inverse_one_norm_estimate(lu, pivots)

    exact = np.linalg.norm(np.linalg.inv(A.numpy()), 1)
    assert exact / 3 <= estimate <= exact * (1 + 1e-9)


@pytest.mark.parametrize("controller", ["standard", "expanding"])
@pytest.mark.parametrize("shape", [(40, 60), (60, 40)])
def test_operator_small_batch_equals_matrix(generator, controller, shape):
    # Five errors through a 40-dimensional loop are carried through the eigenvectors, not through P.
    from dilightning.inversion import dynamic_inversion_operator

    W = conditioned_matrix(*shape, generator)
    delta = torch.randn(5, shape[0], generator=generator, dtype=torch.float64)
    operator = dynamic_inversion_operator(W, -W.T, 1e-3, steps=700, controller=controller)

    expected = delta.numpy() @ operator.matrix().numpy().T
    np.testing.assert_allclose(operator(delta).numpy(), expected, rtol=1e-9, atol=1e-12)


def test_closed_form_float32_marginal_cluster():
    # Rank-deficient W with B = -pinv(W): the loop has 30 eigenvalues at 0 and 10 at -1. At alpha = 0
    # float32 eigenvalue errors there would tilt float32 modes by almost a degree.
    generator = torch.Generator().manual_seed(35)
    left = torch.randn(40, 10, generator=generator, dtype=torch.float64)
    right = torch.randn(10, 48, generator=generator, dtype=torch.float64)
    W = left @ right / 480**0.5
    B = -torch.linalg.pinv(W)
    delta = torch.randn(3, 40, generator=generator, dtype=torch.float64)
    exact = dynamic_inversion(W, B, delta, 0.0, method="euler")

    closed = dynamic_inversion(W.float(), B.float(), delta.float(), 0.0, method="closed_form")

    assert vector_angle(closed.double(), exact).max() < 0.1


@pytest.mark.parametrize("size", [10, 40])  # the dense route and the modal route
def test_closed_form_passes_gradients_to_delta(generator, size):
    W = conditioned_matrix(size, size + 5, generator)
    delta = torch.randn(3, size, generator=generator, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(3, size + 5, generator=generator, dtype=torch.float64)

    (dynamic_inversion(W, -W.T, delta, 0.01, method="closed_form") * weights).sum().backward()

    P = dynamic_inversion_matrix(W, -W.T, 0.01)
    torch.testing.assert_close(delta.grad, weights @ P, rtol=1e-9, atol=1e-12)


def test_closed_form_unstable_loop_no_warning():
    # B W = -|w|² ≈ -40 makes the one-dimensional loop unstable: the recurrence overflows, like the
    # Euler loop, without numpy's overflow warnings.
    generator = torch.Generator().manual_seed(0)
    W = torch.randn(40, 1, generator=generator, dtype=torch.float64)
    delta = torch.randn(2, 40, generator=generator, dtype=torch.float64)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        closed = dynamic_inversion(W, -W.T, delta, 0.0, method="closed_form")
    euler = dynamic_inversion(W, -W.T, delta, 0.0, method="euler")

    assert not torch.isfinite(closed).any()
    assert not torch.isfinite(euler).any()


def test_closed_form_non_finite_weights_give_nan(generator):
    W = conditioned_matrix(30, 40, generator)
    W[0, 0] = float("inf")
    delta = torch.randn(2, 30, generator=generator, dtype=torch.float64)

    result = dynamic_inversion(W, -W.T, delta, 0.0, method="closed_form")

    assert torch.isnan(result).all()
