"""A shuffling order that is a pure function of (seed, epoch) and can resume mid-epoch.

Lightning saves and restores the state of a DataModule with its checkpoints. The order of epoch
``e`` is ``torch.randperm(N, generator=manual_seed(seed + e))``, so it does not depend on how many
epochs ran in this process, and a run resumed from a mid-epoch checkpoint skips exactly the examples
that the interrupted run had already trained on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler


class ResumableRandomSampler(Sampler[int]):
    """Random order per epoch, seeded by ``seed + epoch``.

    ``skip`` drops the start of the next pass if that pass is epoch ``skip_epoch``, the epoch a
    resumed run was interrupted in. A checkpoint written at the end of an epoch therefore resumes
    with the whole next epoch. ``len()`` is always the full epoch, so Lightning's batch counting stays
    that of the uninterrupted run while the resumed iteration yields only the remaining examples.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0
        self.skip = 0
        self.skip_epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of ``epoch`` (Lightning calls this at the start of every epoch)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        start = self.skip if self.epoch == self.skip_epoch else 0
        self.skip = 0
        return iter(order[start:])

    def __len__(self) -> int:
        return self.size


class ResumableDataModuleMixin:
    """DataModule state that lets a run resumed from a mid-epoch checkpoint continue the same order.

    Classes using it create their training sampler with :meth:`training_sampler`.
    """

    batch_size: int
    seed: int
    _resume_state: dict[str, int] | None = None

    def training_sampler(self, size: int) -> ResumableRandomSampler:
        """Return the training sampler, positioned after the examples a resumed run already used."""
        # The order uses seed + 1, so it is not drawn from the same stream as seeded data.
        sampler = ResumableRandomSampler(size, self.seed + 1)
        if self._resume_state is not None:
            sampler.set_epoch(self._resume_state["epoch"])
            sampler.skip_epoch = self._resume_state["epoch"]
            sampler.skip = self._resume_state["examples_done"]
            self._resume_state = None
        return sampler

    def state_dict(self) -> dict[str, Any]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return {}
        # Checkpoints are written from on_train_batch_end, when the current batch counts as processed.
        processed = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"epoch": trainer.current_epoch, "examples_done": processed * self.batch_size}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict:
            self._resume_state = {"epoch": int(state_dict["epoch"]), "examples_done": int(state_dict["examples_done"])}
