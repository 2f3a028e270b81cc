"""A few hundred online MNIST updates with every rule lower the test error."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl

from dilightning.data import MNISTDataModule
from dilightning.models import FeedforwardModule
from tests.conftest import MNIST_ROOT

pytestmark = pytest.mark.skipif(
    not (MNIST_ROOT / "MNIST" / "raw").is_dir(), reason=f"MNIST files not found in {MNIST_ROOT / 'MNIST' / 'raw'}"
)

RULES = {
    "BP": {},
    "FA": {},
    "PBP": {},
    "NDI": {"alpha": 0.01},
    "DI": {"alpha": 0.01},
    "SLDI": {"alpha": 0.01},
}


@pytest.fixture(scope="module")
def data():
    module = MNISTDataModule(data_dir=str(MNIST_ROOT), train_subset=400, eval_subset=1000, batch_size=100)
    module.setup()
    return module


def _test_error(trainer, model, data) -> float:
    return float(trainer.validate(model, datamodule=data, verbose=False)[0]["val/error"])


@pytest.mark.parametrize("rule", sorted(RULES))
def test_online_training_lowers_test_error(data, rule):
    # 784-100-10 instead of 784-1000-10 and a larger learning rate, so 400 updates show learning.
    model = FeedforwardModule([784, 100, 10], ["tanh", "softmax"], rule, loss="cross_entropy", lr=0.01,
                              update_batch_size=1, weight_scale=0.05, **RULES[rule])
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu")
    before = _test_error(trainer, model, data)

    trainer.fit(model, datamodule=data)
    after = _test_error(trainer, model, data)

    assert trainer.global_step == 400
    assert before > 0.7
    assert after < before - 0.3
