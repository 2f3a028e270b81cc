"""The LightningModule turns propagated errors into exactly the updates of Eq. 2."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from dilightning.models import FeedforwardModule

SIZES = [6, 5, 4, 3]
NONLINEARITIES = ["tanh", "tanh", "linear"]


def _trainer(steps: int) -> pl.Trainer:
    return pl.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )


def _batches(generator, count=4, batch_size=3, classes=None):
    x = torch.randn(count * batch_size, SIZES[0], generator=generator)
    if classes:
        t = torch.randint(0, classes, (count * batch_size,), generator=generator)
    else:
        t = torch.randn(count * batch_size, SIZES[-1], generator=generator)
    return x, t, DataLoader(TensorDataset(x, t), batch_size=batch_size, shuffle=False)


def _autograd_gradients(module, x, t):
    """Gradients of the mean of ½‖y − t‖² computed by plain autograd on a copy of the network."""
    network = torch.nn.Sequential(*[torch.nn.Linear(a, b) for a, b in zip(SIZES[:-1], SIZES[1:])])
    network.load_state_dict({k.replace("layers.", ""): v for k, v in module.network.state_dict().items()})
    h = x
    for index, layer in enumerate(network):
        h = layer(h)
        if index < len(network) - 1:
            h = torch.tanh(h)
    (0.5 * ((h - t) ** 2).sum(-1).mean()).backward()
    return [parameter.grad for parameter in network.parameters()]


def test_bp_update_equals_autograd_sgd(generator):
    module = FeedforwardModule(SIZES, NONLINEARITIES, "BP", lr=0.1, weight_scale=0.5)
    x, t, loader = _batches(generator, count=1)
    before = [p.detach().clone() for p in module.network.parameters()]
    gradients = _autograd_gradients(module, x, t)

    _trainer(1).fit(module, loader)

    for old, new, gradient in zip(before, module.network.parameters(), gradients):
        torch.testing.assert_close(new.detach(), old - 0.1 * gradient, rtol=1e-5, atol=1e-7)


def test_update_is_delta_times_input(generator):
    module = FeedforwardModule(SIZES, NONLINEARITIES, "FA", lr=0.1, weight_scale=0.5)
    x, t, _ = _batches(generator, count=1)

    pre_activations, deltas, cache, _ = module.propagate(x, t)
    surrogate = sum((a * d).sum() for a, d in zip(pre_activations, deltas)) / x.shape[0]
    surrogate.backward()

    for layer, delta, h in zip(module.network.layers, deltas, cache.inputs):
        expected_weight = delta.numpy().T @ h.numpy() / x.shape[0]
        np.testing.assert_allclose(layer.weight.grad.numpy(), expected_weight, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(layer.bias.grad.numpy(), delta.numpy().mean(0), rtol=1e-5, atol=1e-7)


def test_sum_reduction_scales_update(generator):
    x, t, loader = _batches(generator, count=1)
    mean_module = FeedforwardModule(SIZES, NONLINEARITIES, "BP", lr=0.01, weight_scale=0.5)
    sum_module = FeedforwardModule(SIZES, NONLINEARITIES, "BP", lr=0.01, weight_scale=0.5, reduction="sum")
    start = mean_module.network.layers[0].weight.detach().clone()

    _trainer(1).fit(mean_module, loader)
    _trainer(1).fit(sum_module, loader)

    mean_step = mean_module.network.layers[0].weight.detach() - start
    sum_step = sum_module.network.layers[0].weight.detach() - start
    torch.testing.assert_close(sum_step, 3 * mean_step, rtol=1e-4, atol=1e-7)


def test_momentum_and_weight_decay_match_torch_sgd(generator):
    module = FeedforwardModule(SIZES, NONLINEARITIES, "BP", lr=0.05, momentum=0.9, weight_decay=0.01, weight_scale=0.5)
    x, t, loader = _batches(generator, count=3)
    reference = FeedforwardModule(SIZES, NONLINEARITIES, "BP", weight_scale=0.5)
    optimizer = torch.optim.SGD(reference.network.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)
    for batch in range(3):
        optimizer.zero_grad()
        xb, tb = x[3 * batch : 3 * batch + 3], t[3 * batch : 3 * batch + 3]
        gradients = _autograd_gradients(reference, xb, tb)
        for parameter, gradient in zip(reference.network.parameters(), gradients):
            parameter.grad = gradient
        optimizer.step()

    _trainer(3).fit(module, loader)

    for ours, theirs in zip(module.network.parameters(), reference.network.parameters()):
        torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=1e-5, atol=1e-7)


def test_fixed_norm_updates_have_length_lr(generator):
    module = FeedforwardModule(SIZES, NONLINEARITIES, "DI", lr=0.02, fixed_norm_updates=True, alpha=0.01, weight_scale=0.5)
    _, _, loader = _batches(generator, count=1)
    before = [p.detach().clone() for p in module.network.parameters()]

    _trainer(1).fit(module, loader)

    for old, new in zip(before, module.network.parameters()):
        assert torch.linalg.vector_norm(new.detach() - old).item() == pytest.approx(0.02, rel=1e-5)


def test_gradient_clipping_bounds_update(generator):
    module = FeedforwardModule(SIZES, NONLINEARITIES, "BP", lr=1.0, gradient_clip_val=1e-3, weight_scale=0.5)
    _, _, loader = _batches(generator, count=1)
    before = torch.cat([p.detach().flatten().clone() for p in module.network.parameters()])

    _trainer(1).fit(module, loader)

    after = torch.cat([p.detach().flatten() for p in module.network.parameters()])
    assert torch.linalg.vector_norm(after - before).item() <= 1e-3 * (1 + 1e-4)


def test_equal_seeds_give_equal_initial_weights():
    first = FeedforwardModule(SIZES, NONLINEARITIES, "BP", init_seed=3)
    second = FeedforwardModule(SIZES, NONLINEARITIES, "DI", init_seed=3, feedback_init="random", alpha=0.01)
    third = FeedforwardModule(SIZES, NONLINEARITIES, "BP", init_seed=4)

    for a, b in zip(first.network.parameters(), second.network.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(first.network.layers[0].weight, third.network.layers[0].weight)


def test_uniform_init_range_and_zero_bias():
    module = FeedforwardModule([30, 20, 10], ["tanh", "linear"], weight_scale=0.01)

    weight = module.network.layers[0].weight
    assert weight.abs().max() <= 0.01
    assert weight.abs().max() > 0.009
    assert torch.count_nonzero(module.network.layers[0].bias) == 0


def test_orthogonal_init_is_orthogonal():
    module = FeedforwardModule([8, 8, 4], ["tanh", "linear"], weight_init="orthogonal")

    weight = module.network.layers[0].weight.detach().double()
    torch.testing.assert_close(weight @ weight.T, torch.eye(8, dtype=torch.float64), rtol=0, atol=1e-5)


def test_cross_entropy_output_error_is_softmax_minus_onehot(generator):
    module = FeedforwardModule(SIZES, ["tanh", "tanh", "softmax"], "BP", loss="cross_entropy", weight_scale=0.5)
    x = torch.randn(5, SIZES[0], generator=generator)
    t = torch.randint(0, SIZES[-1], (5,), generator=generator)

    _, deltas, cache, _ = module.propagate(x, t)

    logits = cache.pre_activations[-1]
    expected = torch.softmax(logits, -1) - torch.nn.functional.one_hot(t, SIZES[-1]).float()
    torch.testing.assert_close(deltas[-1], expected)


@pytest.mark.parametrize("output", ["linear", "tanh"])
def test_squared_error_output_error_matches_autograd(generator, output):
    from dilightning.inversion import get_nonlinearity
    from dilightning.models.losses import output_error

    a = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    t = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    g = get_nonlinearity(output)

    delta, losses = output_error("mse", a, t, g)

    leaf = a.clone().requires_grad_(True)
    y = torch.tanh(leaf) if output == "tanh" else leaf
    expected_losses = 0.5 * ((y - t) ** 2).sum(-1)
    (expected,) = torch.autograd.grad(expected_losses.sum(), leaf)
    torch.testing.assert_close(delta, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(losses, expected_losses.detach(), rtol=1e-12, atol=0)


def test_classification_validation_logs_error(generator):
    module = FeedforwardModule(SIZES, ["tanh", "tanh", "softmax"], "BP", loss="cross_entropy", lr=0.1, weight_scale=0.5)
    _, _, loader = _batches(generator, classes=SIZES[-1])
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)

    trainer.fit(module, loader, loader)

    assert 0.0 <= float(trainer.callback_metrics["val/error"]) <= 1.0
    assert "val/accuracy" in trainer.callback_metrics


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"loss": "l1"}, "unknown loss 'l1'"),
        ({"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'"),
        ({"lr": -1.0}, r"lr \(learning rate\) must be > 0"),
        ({"weight_decay": -1e-3}, "weight_decay must be >= 0"),
        ({"reduction": "max"}, "unknown reduction 'max'"),
        ({"weight_init": "xavier"}, "unknown weight_init 'xavier'"),
    ],
)
def test_invalid_options_raise(options, message):
    with pytest.raises(ValueError, match=message):
        FeedforwardModule(SIZES, NONLINEARITIES, "BP", **options)


def test_nonlinearity_count_must_match_layers():
    with pytest.raises(ValueError, match="nonlinearities has 2 entries but layer_sizes defines 3 layers"):
        FeedforwardModule(SIZES, ["tanh", "linear"], "BP")


def test_softmax_only_on_output():
    with pytest.raises(ValueError, match="only valid for the output layer"):
        FeedforwardModule(SIZES, ["softmax", "tanh", "linear"], "BP")


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_direct_gradients_equal_the_surrogate_backward_pass(generator, reduction):
    x, t, _ = _batches(generator, count=1, batch_size=5)
    x, t = x.double(), t.double()
    surrogate_module = FeedforwardModule(SIZES, NONLINEARITIES, "FA", reduction=reduction, lr=0.1, weight_scale=0.5).double()
    direct_module = FeedforwardModule(SIZES, NONLINEARITIES, "FA", reduction=reduction, lr=0.1, weight_scale=0.5).double()
    direct_module.load_state_dict(surrogate_module.state_dict())
    # Plain SGD with lr 1 and no decay: the parameter change is minus the gradient.
    surrogate_optimizer = torch.optim.SGD(surrogate_module.network.parameters(), lr=1.0)
    direct_optimizer = torch.optim.SGD(direct_module.network.parameters(), lr=1.0)

    surrogate_module.update(x, t, surrogate_optimizer)
    direct_module.update(x, t, direct_optimizer, direct_gradients=True)

    for (name, a), b in zip(surrogate_module.network.named_parameters(), direct_module.network.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15, msg=name)
    initial = FeedforwardModule(SIZES, NONLINEARITIES, "FA", weight_scale=0.5).double().network.layers[0].weight
    assert (direct_module.network.layers[0].weight - initial).abs().max() > 1e-3  # the update is not empty


def test_update_batch_size_splits_into_sequential_updates(generator):
    x, t, _ = _batches(generator, count=4, batch_size=3)
    one_per_step = FeedforwardModule(SIZES, NONLINEARITIES, "DI", alpha=0.01, lr=0.1, weight_scale=0.5)
    chunked = FeedforwardModule(SIZES, NONLINEARITIES, "DI", alpha=0.01, lr=0.1, weight_scale=0.5, update_batch_size=1)

    _trainer(12).fit(one_per_step, DataLoader(TensorDataset(x, t), batch_size=1))
    trainer = _trainer(12)
    trainer.fit(chunked, DataLoader(TensorDataset(x, t), batch_size=6))

    assert trainer.global_step == 12  # every sequential update is an optimizer step
    for a, b in zip(one_per_step.network.parameters(), chunked.network.parameters()):
        assert torch.equal(a, b)


class _ThreadRecorder(pl.Callback):
    """Records PyTorch's intra-op thread count at every sequential weight update."""

    def __init__(self) -> None:
        self.counts: list[int] = []

    def on_weight_update(self, trainer: pl.Trainer, module: FeedforwardModule) -> None:
        self.counts.append(torch.get_num_threads())


@pytest.mark.parametrize(("online_threads", "expected"), [(1, 1), (None, 2)])
def test_online_threads_set_and_restored(generator, online_threads, expected):
    x, t, _ = _batches(generator, count=2, batch_size=3)
    module = FeedforwardModule(SIZES, NONLINEARITIES, "BP", update_batch_size=1, online_threads=online_threads)
    recorder = _ThreadRecorder()
    trainer = _trainer(6)
    trainer.callbacks.append(recorder)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        trainer.fit(module, DataLoader(TensorDataset(x, t), batch_size=3))
        assert recorder.counts == [expected] * 6
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("value", [0, 1.5])
def test_online_threads_must_be_positive_int(value):
    with pytest.raises(ValueError, match="online_threads must be >= 1"):
        FeedforwardModule(SIZES, NONLINEARITIES, "BP", online_threads=value)
