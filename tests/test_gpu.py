"""CPU and GPU (CuPy) give the same results on a fixed seed, within float tolerance.

Skipped, with the reason, where no CUDA GPU is usable (CI and most laptops). Run them on a GPU
machine with:  LOCK=requirements-gpu.lock bash scripts/setup.sh && python -m pytest -m gpu
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.backend import gpu_available, to_host
from pipeline.core.events import Counts
from pipeline.core.neuron import NeuronModel
from pipeline.models import ep, eqspike
from tests.conftest import ep_dynamics, spike_dynamics

DYN = spike_dynamics(T=20, K=10, beta=0.5, nudge="symmetric", pre_factor="spike", activation="sigmoid",
                            eval_avg_steps=1, neuron=NeuronModel(model="sigma_delta", threshold=1.0, tau_syn_steps=10.0, leak=1.0))

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not gpu_available(), reason="no usable CUDA GPU (CuPy missing or no device)"),
]


def _both(fn):
    import cupy

    return fn(np), fn(cupy)


def test_ep_training_matches():
    rng = np.random.default_rng(0)
    x_host, y_host = rng.random((40, 784), dtype=np.float32), rng.integers(0, 10, 40)

    def run(xp):
        params = ep.init_params([784, 64, 10], seed=0, xp=xp)
        x, y = xp.asarray(x_host), xp.asarray(y_host)
        dyn = ep_dynamics(T=20, K=8, beta=0.2)
        for i in range(0, 40, 20):
            ep.train_batch(params, x[i:i + 20], ep.centred_target(y[i:i + 20], 10, xp, np.float32), dyn, [0.1, 0.05])
        return [to_host(w) for w in params.W + params.b], ep.evaluate(params, x, y, dyn)

    (cpu, acc_cpu), (gpu, acc_gpu) = _both(run)
    for a, b in zip(cpu, gpu):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert acc_cpu[0] == acc_gpu[0]


def test_eqspike_sigma_delta_matches():
    rng = np.random.default_rng(1)
    x_host, y_host = rng.random((20, 784), dtype=np.float32), rng.integers(0, 10, 20)

    def run(xp):
        params = ep.init_params([784, 64, 10], seed=0, xp=xp)
        x = xp.asarray(x_host)
        y = eqspike.onehot(xp.asarray(y_host), 10, xp, np.float32)
        counts = Counts()
        eqspike.train_batch(params, x, y, DYN, [0.1, 0.05], counts=counts)
        return [to_host(w) for w in params.W], {".".join(k): v for k, v in counts.host().items()}

    (cpu, c_cpu), (gpu, c_gpu) = _both(run)
    for a, b in zip(cpu, gpu):
        # a threshold crossing can flip on a rounding difference: compare in bulk
        assert np.mean(np.isclose(a, b, rtol=1e-3, atol=1e-4)) > 0.99
    assert abs(c_cpu["free.input.spikes"] - c_gpu["free.input.spikes"]) <= 0.001 * c_cpu["free.input.spikes"] + 2
