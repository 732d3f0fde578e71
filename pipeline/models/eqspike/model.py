"""EqSpike as seen by the shared training loop (``pipeline.models.train.fit``)."""

from __future__ import annotations

from types import ModuleType

from pipeline.core.events import Counts, to_json
from pipeline.models.eqspike.dynamics import SpikeDynamics, make_rng, onehot
from pipeline.models.eqspike.schedule import evaluate, train_batch, uses_compiled


class EqSpikeModel:
    """EqSpike as seen by ``pipeline.models.train.fit``; counts the events of training and inference."""

    name = "eqspike"

    def __init__(self, dyn: SpikeDynamics, xp: ModuleType, seed: int, eval_batch_size: int):
        self.dyn, self.xp, self.seed, self.eval_batch_size = dyn, xp, seed, eval_batch_size
        self.compiled = uses_compiled(dyn, xp)
        self.rng = make_rng(xp, [seed, 1, 0])
        self._reset()

    def start_epoch(self, epoch: int) -> None:
        # Bernoulli spikes: one stream per epoch, so a resumed run draws what an uninterrupted
        # one would have drawn
        self.rng = make_rng(self.xp, [self.seed, 1, epoch])

    def _reset(self) -> None:
        self.train_counts, self.test_counts = Counts(), Counts()
        self.n_train = self.n_test = 0

    def train_batch(self, params, x, labels, lr, sign: float):
        self.n_train += x.shape[0]
        target = onehot(labels, params.W[-1].shape[1], self.xp, x.dtype)
        return train_batch(params, x, target, self.dyn, lr, sign, self.rng, self.train_counts)

    def evaluate(self, params, x, labels, count: bool = True, keep: bool = False) -> dict:
        """``count``: add this evaluation's events to the inference counts (the raw weights
        only, not the average evaluated beside them); ``keep``: the per-example predictions."""
        if count:
            self.n_test += x.shape[0]
        return evaluate(params, x, labels, self.dyn, self.eval_batch_size, self.rng,
                        self.test_counts if count else None, keep=keep)

    def epoch_extras(self) -> dict:
        """Event counts per example of this epoch, ``{"events": {"train": ..., "inference": ...}}``
        nested as ``pipeline.events.to_json``: training (free + nudged phases, updates) and
        inference (one free phase of the raw weights); a part with no examples is left out."""
        events = {}
        if self.n_train:
            events["train"] = to_json(self.train_counts.per_example(self.n_train))
        if self.n_test:
            events["inference"] = to_json(self.test_counts.per_example(self.n_test))
        self._reset()
        return {"events": events}
