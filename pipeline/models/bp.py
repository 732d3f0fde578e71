"""The backprop baseline of claims C3 and C4: an MLP of EqSpike's size (784-512-10), ReLU hidden
layer, softmax cross-entropy, plain mini-batch SGD, NumPy or CuPy (the same ``Params`` as the EP
models: ``W[l]: (n_l, n_{l+1})``). What a user would train on a GPU for the same task.

    forward    h = relu(x W0 + b0),  z = h W1 + b1,  p = softmax(z)
    backward   dz = (p - onehot) / B,  dW1 = h^T dz,  dh = dz W1^T [h > 0],  dW0 = x^T dh
    update     W -= lr dW (per matrix rate)

Operation counts of one example (``pipeline.analysis.energy.workload_macs``, workload ``mlp_bp``): forward
sum n_l n_{l+1} MACs; training forward + backward (2 sum n_l n_{l+1} - n_0 n_1: no gradient for
the input) + the update (one multiply-add per weight).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from pipeline.core.backend import to_host
from pipeline.core.network import Params
from pipeline.core.schema import Checked, req
from pipeline.models.train import ModelOut, Schedule


@dataclass(frozen=True, kw_only=True)
class BPConfig(Schedule, Checked):
    """The ``bp`` config: one hidden layer, a learning rate per matrix, the shared schedule."""

    config_path = "bp"

    sizes: list[int] = req(min_len=3, max_len=3, ge=1)
    lr: list[float] = req(min_len=2, max_len=2, gt=0)
    out: ModelOut = req()


def forward(params: Params, x):
    """Hidden activations (after ReLU) and output logits."""
    h = x @ params.W[0]
    h += params.b[0]
    h *= h > 0
    z = h @ params.W[1]
    z += params.b[1]
    return h, z


def _softmax(z, xp):
    z = z - z.max(axis=1, keepdims=True)
    e = xp.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class BPModel:
    """The MLP as seen by ``pipeline.models.train.fit``."""

    name = "bp"

    def __init__(self, xp: ModuleType, eval_batch_size: int):
        self.xp, self.eval_batch_size = xp, eval_batch_size

    def train_batch(self, params: Params, x, labels, lr, sign: float):
        if len(params.W) != 2:
            raise ValueError(f"bp.sizes: the baseline has one hidden layer, got {len(params.W) + 1} layers")
        xp = self.xp
        B = x.shape[0]
        h, z = forward(params, x)
        dz = _softmax(z, xp)
        dz[xp.arange(B), labels] -= 1.0
        dz /= B
        dh = dz @ params.W[1].T
        dh *= h > 0
        params.W[1] -= lr[1] * (h.T @ dz)
        params.b[1] -= lr[1] * dz.sum(axis=0)
        params.W[0] -= lr[0] * (x.T @ dh)
        params.b[0] -= lr[0] * dh.sum(axis=0)
        return z

    def evaluate(self, params: Params, x, labels, count: bool = True, keep: bool = False) -> dict:
        """``keep``: the per-example predicted classes too (``predicted``)."""
        xp = self.xp
        correct, loss, guesses = 0, 0.0, []
        for start in range(0, x.shape[0], self.eval_batch_size):
            xb, yb = x[start:start + self.eval_batch_size], labels[start:start + self.eval_batch_size]
            _, z = forward(params, xb)
            p = _softmax(z, xp)
            guess = z.argmax(axis=1)
            correct += int((guess == yb).sum())
            loss += float(-xp.log(p[xp.arange(xb.shape[0]), yb] + 1e-12).sum())
            if keep:
                guesses.append(to_host(guess))
        out = {"accuracy": correct / x.shape[0], "loss": loss / x.shape[0]}
        if keep:
            out["predicted"] = np.concatenate(guesses).astype(np.int8)
        return out

    def start_epoch(self, epoch: int) -> None:
        pass

    def epoch_extras(self) -> dict:
        return {}
