"""The phase schedule of EqSpike: one learning step (free phase, then the nudged phase(s) from
the free state, then the rule), the read-out, evaluation, and the event counts of each phase."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.core.backend import array_module, to_host
from pipeline.core.events import Counts
from pipeline.core.network import Params, sizes_of
from pipeline.models.eqspike.array_engine import ArrayEngine
from pipeline.models.eqspike.dynamics import SpikeDynamics, onehot
from pipeline.models.eqspike.rule import spike_rule


def count_phase(counts: Counts, phase: str, sizes: Sequence[int], steps: int, batch: int,
                input_spikes, layer_spikes: Sequence, plastic: bool) -> None:
    """Events of ``steps`` steps of ``batch`` examples, from the spike totals of the phase.

    Fan-out of a spike: every neuron of the adjacent layers it projects to (the input projects to
    layer 1 only). Spike-triggered updates (when ``plastic``): an input spike updates its n_1
    synapses; a spike of layer l its synapses to both neighbours (the rule's two terms)."""
    counts.add(phase, "input", "spikes", input_spikes)
    counts.add(phase, "input", "synaptic_events", input_spikes * sizes[1])
    if plastic:
        counts.add(phase, "input", "weight_updates", input_spikes * sizes[1])
    L = len(layer_spikes)
    for l, n in enumerate(layer_spikes):
        name = f"layer{l + 1}"
        fanout = (sizes[l] if l > 0 else 0) + (sizes[l + 2] if l + 1 < L else 0)
        counts.add(phase, name, "spikes", n)
        counts.add(phase, name, "synaptic_events", n * fanout)
        counts.add(phase, name, "neuron_updates", float(steps * batch * sizes[l + 1]))
        if plastic:
            counts.add(phase, name, "weight_updates", n * fanout)
    counts.add(phase, "all", "time_steps", float(steps))


def uses_compiled(dyn: SpikeDynamics, xp) -> bool:
    """Whether ``dyn.engine`` runs the compiled kernels: ``compiled`` (CPU only, a neuron model
    the kernels know), or ``auto`` on the CPU with such a model; otherwise the array engine."""
    from pipeline.models.eqspike.compiled_engine import KERNEL_MODELS

    known = getattr(dyn.neuron.kind, "kernel_code", None) in KERNEL_MODELS
    if dyn.engine == "compiled":
        if xp is not np:
            raise ValueError("eqspike.engine=compiled runs on the CPU (NumPy arrays); use array or auto on a GPU")
        if not known:
            raise ValueError(f"eqspike.engine=compiled: the compiled kernels do not know the neuron model "
                             f"{dyn.neuron.model!r} (kernel_code {getattr(dyn.neuron.kind, 'kernel_code', None)!r}; "
                             f"known: {KERNEL_MODELS}); use eqspike.engine=array or auto")
        return True
    return dyn.engine == "auto" and xp is np and known


def make_engine(params: Params, x, steps: int, dyn: SpikeDynamics, rng=None):
    """The engine ``dyn.engine`` names (``uses_compiled``)."""
    if uses_compiled(dyn, array_module(x)):
        from pipeline.models.eqspike.compiled_engine import CompiledEngine

        return CompiledEngine(params, x, steps, dyn, rng)
    return ArrayEngine(params, x, steps, dyn, rng)


def train_batch(params: Params, x, y_onehot, dyn: SpikeDynamics, lr: Sequence[float], sign: float = 1.0,
                rng=None, counts: Counts | None = None, engine=None, rule=None):
    """One EqSpike learning step on a batch; returns the output state after the free phase.

    Symmetric: T free steps, then K steps at +beta and K steps at -beta from the same free state,
    ``spike_rule(+, -)`` with scale eta / (2 beta B). One-sided: the rule over the K nudged steps
    minus the rule over the last K free steps, scale eta / (beta B). ``engine`` (a factory like
    ``make_engine``) and ``rule`` (like ``spike_rule``) replace the defaults for analyses
    (``pipeline/analysis/bias.py``)."""
    counts = Counts() if counts is None else counts
    rule = spike_rule if rule is None else rule
    B = x.shape[0]
    sizes = sizes_of(params)
    eng = (make_engine if engine is None else engine)(params, x, dyn.T + dyn.K, dyn, rng)
    beta = dyn.beta * sign

    def phase(name, state, start, steps, **kw):
        r = eng.run_phase(state, start, steps, **kw)
        count_phase(counts, name, sizes, steps, B, r.input_spikes, r.layer_spikes, kw.get("record", False))
        return r.state, r.window

    state = eng.initial_state()
    if dyn.nudge == "symmetric":
        free, _ = phase("free", state, 0, dyn.T)
        _, pos = phase("nudged", free, dyn.T, dyn.K, target=y_onehot, beta=beta, record=True)
        _, neg = phase("nudged", free, dyn.T, dyn.K, target=y_onehot, beta=-beta, record=True)
        rule(params, pos, neg, [eta / (2.0 * beta * B) for eta in lr], eng.active)
        return eng.output(free)
    # one-sided: subtract the rule measured over the last K free steps (same rate of change)
    window = min(dyn.K, dyn.T)
    state, _ = phase("free", state, 0, dyn.T - window)
    free, ref = phase("free", state, dyn.T - window, window, record=True)
    _, nudged = phase("nudged", free, dyn.T, dyn.K, target=y_onehot, beta=beta, record=True)
    rule(params, nudged, ref, [eta / (beta * B) for eta in lr], eng.active, minus_weight=dyn.K / window)
    return eng.output(free)


def read_out(params: Params, x, dyn: SpikeDynamics, rng=None, counts: Counts | None = None, observer=None):
    """Free phase of T steps; returns the two read-outs: the output state averaged over the last
    ``eval_avg_steps`` (analog, what the prediction uses) and the output spike counts over the
    whole phase (what a spiking chip would read), both ``(B, n_L)``."""
    counts = Counts() if counts is None else counts
    eng = make_engine(params, x, dyn.T, dyn, rng)
    n_avg = min(dyn.eval_avg_steps, dyn.T)
    kw = {} if observer is None else {"observer": observer}
    r = eng.run_phase(eng.initial_state(), 0, dyn.T, avg_from=dyn.T - n_avg, **kw)
    count_phase(counts, "inference", sizes_of(params), dyn.T, x.shape[0], r.input_spikes, r.layer_spikes, False)
    return r.out_sum / n_avg, r.out_spikes


def predict(params: Params, x, dyn: SpikeDynamics, rng=None, counts: Counts | None = None, observer=None):
    """Free phase of T steps; the output state averaged over the last ``eval_avg_steps``."""
    return read_out(params, x, dyn, rng, counts, observer)[0]


def evaluate(params: Params, x, labels, dyn: SpikeDynamics, batch_size: int = 1000, rng=None,
             counts: Counts | None = None, keep: bool = False) -> dict:
    """Accuracy and mean loss 1/2 ||y - s_L||^2 of the spiking network's free phase (analog
    read-out), the accuracy of the output spike counts (ties go to the lower class) and the
    fraction of examples whose top spike count is tied; ``keep``: the per-example predicted
    classes of both read-outs too (``predicted``, ``predicted_spike_count``)."""
    xp = array_module(x)
    correct, correct_spikes, loss, ties = 0, 0, 0.0, 0
    guesses: list = []
    guesses_spikes: list = []
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start:start + batch_size], labels[start:start + batch_size]
        out, spikes = read_out(params, xb, dyn, rng, counts)
        target = onehot(yb, out.shape[1], xp, out.dtype)
        guess, guess_spikes = out.argmax(axis=1), spikes.argmax(axis=1)
        correct += int((guess == yb).sum())
        correct_spikes += int((guess_spikes == yb).sum())
        ties += int(((spikes == spikes.max(axis=1, keepdims=True)).sum(axis=1) > 1).sum())
        loss += float(0.5 * ((target - out) ** 2).sum())
        if keep:
            guesses.append(to_host(guess))
            guesses_spikes.append(to_host(guess_spikes))
    n = x.shape[0]
    result = {"accuracy": correct / n, "loss": loss / n, "accuracy_spike_count": correct_spikes / n,
              "spike_count_tie_rate": ties / n}
    if keep:
        result["predicted"] = np.concatenate(guesses).astype(np.int8)
        result["predicted_spike_count"] = np.concatenate(guesses_spikes).astype(np.int8)
    return result



def simulate_learning(params: Params, x, y_onehot, dyn: SpikeDynamics, rng=None, observer=None) -> None:
    """The phases of one learning step (free, then the nudged phase(s) from the free state), with
    ``observer`` seeing every step and the phase it belongs to, and no weight change: for
    rasters and the STDP recorder (array engine). ``observer(phase, t, spikes_in_t, spikes, old, new)``."""
    eng = ArrayEngine(params, x, dyn.T + dyn.K, dyn, rng, all_pixels=True)

    def seen_as(phase):
        return None if observer is None else (lambda *step: observer(phase, *step))

    free = eng.run_phase(eng.initial_state(), 0, dyn.T, observer=seen_as("free")).state
    signs = (1.0, -1.0) if dyn.nudge == "symmetric" else (1.0,)
    for sign in signs:
        eng.run_phase(free, dyn.T, dyn.K, target=y_onehot, beta=sign * dyn.beta,
                      observer=seen_as("nudged+" if sign > 0 else "nudged-"))


def record_raster(params: Params, x, y_onehot, dyn: SpikeDynamics, rng=None) -> dict[str, list]:
    """Spikes of every layer through the free phase and the nudged phase(s), without learning:
    ``{"free": [...], "nudged+": [...], ...}``, each a list over steps of
    ``[input, layer1, ..., output]`` spike arrays ``(B, n)``."""
    out: dict[str, list] = {}
    simulate_learning(params, x, y_onehot, dyn, rng,
                      lambda phase, t, s_in, spikes, old, new: out.setdefault(phase, []).append([s_in, *spikes]))
    return out

