"""The array engine (NumPy / CuPy): the reference. ``step`` is the network step: emission, trace,
rho, nudge and leak of every layer, each written once in ``pipeline/core/neuron.py``."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.core.backend import array_module
from pipeline.core.network import Params
from pipeline.core.neuron import emit, relax, rho
from pipeline.models.eqspike.dynamics import (
    Layer,
    PhaseResult,
    SpikeDynamics,
    Window,
    active_inputs,
    encode_input,
    initial_state,
    input_drive,
)


def step(params: Params, state: Sequence[Layer], drive, dyn: SpikeDynamics, target=None,
         beta: float = 0.0, rng=None) -> tuple[list, list[Layer]]:
    """One time step of every layer: emit spikes from s[t], filter them, update s to s[t+1].

    ``drive``: input current of this step ``(B, n_1)``; ``target``: one-hot ``(B, n_L)``.
    Neurons receive only their neighbours' filtered spikes (traces), never their states.
    Returns the spikes S[t] of every layer and the new state.
    """
    xp = array_module(drive)
    nm = dyn.neuron
    alpha = nm.alpha
    W, b = params
    L = len(state)
    spikes, traces, accs = [], [], []
    for layer in state:
        S, a = emit(layer.s, layer.a, nm, xp, rng)
        r = layer.r + alpha * (S - layer.r)
        spikes.append(S)
        traces.append(r)
        accs.append(a)
    new = []
    for l in range(L):
        if l + 1 < L:
            v = traces[l + 1] @ W[l + 1].T
            v += drive if l == 0 else traces[l - 1] @ W[l] + b[l]
        else:
            v = drive.copy() if l == 0 else traces[l - 1] @ W[l] + b[l]
        rho(v, dyn.activation, out=v)
        s_old = state[l].s
        if l + 1 == L and beta != 0.0:
            v += beta * (target - s_old)
        v = relax(s_old, v, nm)
        new.append(Layer(v, accs[l], traces[l]))
    return spikes, new


class ArrayEngine:
    """``prepare`` once per batch, then ``run_phase`` per phase (see ``train_batch``)."""

    def __init__(self, params: Params, x, steps: int, dyn: SpikeDynamics, rng=None, all_pixels: bool = False):
        """``all_pixels``: keep the pixels silent in the whole batch too (observers see them)."""
        self.params, self.dyn, self.rng = params, dyn, rng
        self.active = array_module(x).arange(x.shape[1]) if all_pixels else active_inputs(x)
        self.spikes_in, self.traces_in = encode_input(x[:, self.active], steps, dyn.neuron, rng)
        self.drive = input_drive(params, self.traces_in, self.active)
        self.B = x.shape[0]

    def initial_state(self):
        return initial_state(self.params, self.B)

    @staticmethod
    def output(state):
        return state[-1].s

    def run_phase(self, state, start: int, steps: int, target=None, beta: float = 0.0, record: bool = False,
                  observer=None, avg_from: int | None = None):
        """``steps`` steps from time ``start``; returns a ``PhaseResult``.
        ``observer(t, spikes_in_t, spikes, old, new)`` sees every step; it observes, it does not
        change the simulation."""
        xp = array_module(self.drive)
        pre, ds = [], []
        layer_spikes = [0.0] * len(state)
        out_sum = out_spikes = None
        for k in range(steps):
            t = start + k
            spikes, new = step(self.params, state, self.drive[t], self.dyn, target, beta, self.rng)
            for l, S in enumerate(spikes):
                layer_spikes[l] = layer_spikes[l] + S.sum()
            if observer is not None:
                observer(t, self.spikes_in[t], spikes, state, new)
            if record:
                pre.append(spikes if self.dyn.pre_factor == "spike" else [layer.r for layer in new])
                ds.append([n.s - o.s for n, o in zip(new, state)])
            state = new
            if avg_from is not None:
                out_spikes = spikes[-1].copy() if out_spikes is None else out_spikes + spikes[-1]
                if t >= avg_from:
                    out_sum = state[-1].s.copy() if out_sum is None else out_sum + state[-1].s
        window = None
        if record:
            pre_in = (self.spikes_in if self.dyn.pre_factor == "spike" else self.traces_in)[start:start + steps]
            window = Window(start, pre_in, [xp.stack([p[l] for p in pre]) for l in range(len(state))],
                            [xp.stack([d[l] for d in ds]) for l in range(len(state))])
        input_spikes = self.spikes_in[start:start + steps].sum()
        return PhaseResult(state, window, input_spikes, layer_spikes, out_sum, out_spikes)
