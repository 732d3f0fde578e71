"""EqSpike: Equilibrium Propagation in a network of spiking neurons with a spike-driven local rule
(our reconstruction of Martin et al. 2021; the equations with their reasons: docs/model.md).

Where each equation lives (one hop each; the files of this folder unless a path is given):

    emission S = emit(s)       ``pipeline/core/neuron.py``: ``SigmaDelta.emit``, ``Bernoulli.emit``
    leak (state update)        ``pipeline/core/neuron.py``: ``relax``  s[t+1] = (1 - g) s[t] + g v
    activation rho             ``pipeline/core/neuron.py``: ``rho``
    trace r                    ``array_engine.step``:  r += (S - r) / tau_syn  (input: ``dynamics.encode_input``)
    network step (state update) ``array_engine.step``: v_l = rho(r W + b) (+ nudge), s = relax(s, v)
    nudge (outputs)            ``array_engine.step``:  v_L += beta (y - s_L)   (outside rho)
    learning rule              ``rule.spike_rule``
    phase schedule             ``schedule.train_batch`` (free phase, then +beta and -beta phases);
                               ``schedule.read_out`` (prediction)
    event counts               ``schedule.count_phase``, keys in ``pipeline/core/events.py``
    the same, compiled (CPU)   ``compiled_engine`` (Numba: ``_example_phase`` fuses every line above)
    parameters                 ``dynamics.SpikeDynamics`` + ``pipeline/models/train.py::Schedule`` =
                               ``dynamics.EqSpikeConfig`` (the ``eqspike`` config); the neuron's:
                               ``pipeline/core/neuron.py::NeuronModel`` (``eqspike.neuron``)
    as the training loop sees it ``model.EqSpikeModel``; a DVC stage's run: ``training.train``

Layers inside the folder (checked by import-linter, pyproject.toml): ``training`` > ``model`` >
``schedule`` > ``array_engine`` | ``compiled_engine`` | ``rule`` > ``dynamics``.

Neurons talk only through binary spikes S; each neuron i keeps an analog EP state s_i, its spike
rate encodes s_i, and its neighbours receive the spikes filtered by a synaptic trace r:

    S_l[t]    = emit(s_l[t])                           (input pixels: the same model, rate x)
    r_l[t]    = r_l[t-1] + (S_l[t] - r_l[t-1]) / tau_syn
    v_l[t]    = rho(r_{l-1}[t] W_l + b_l + r_{l+1}[t] W_{l+1}^T)      (+ beta (y - s_L[t]), outputs)
    s_l[t+1]  = (1 - g) s_l[t] + g v_l[t]

Learning rule (``spike_rule``): a synapse changes when one of its neurons spikes, by the spike
times the other neuron's own state change ds = s[t+1] - s[t], accumulated over a nudged phase:

    dW_ij = eta / beta sum_t (S_j[t] ds_i[t] + S_i[t] ds_j[t])        (input synapses: first term)
    db_i  = eta / beta sum_t ds_i[t]

Spike noise makes ds nonzero without any nudge; ``nudge`` removes that bias: ``symmetric`` runs a
+beta and a -beta phase from the same free state and takes (rule(+) - rule(-)) / 2 beta, where the
noise terms cancel; ``one_sided`` and ``random_sign`` subtract the same rule measured over the
last K steps of the free phase. ``pre_factor: trace`` uses r_j instead of S_j (an ablation).

Two engines run the same equations (``SpikeDynamics.engine``):

- ``array``: NumPy or CuPy array operations over the batch, one call per layer and step. It is
  the reference, the GPU path, and the only one that takes an ``observer`` (rasters, STDP).
- ``compiled`` (CPU, ``compiled_engine.py``, Numba): one kernel runs a whole phase, every
  example in parallel; the input layer is event-driven (an input spike adds its row of W_1 to the
  hidden current; the input rule adds ds_1 into the rows of the pixels that spiked).
  ``auto`` picks it for NumPy arrays when it knows the neuron model (``schedule.uses_compiled``).
  ``input_layer: dense`` computes the input current and the
  input rule as batched matrix products instead (both engines).
"""

from __future__ import annotations

from pipeline.models.eqspike.array_engine import ArrayEngine, step
from pipeline.models.eqspike.dynamics import (
    INPUT_LAYERS,
    PRE_FACTORS,
    EqSpikeConfig,
    Layer,
    PhaseResult,
    SpikeDynamics,
    Window,
    active_inputs,
    encode_input,
    initial_state,
    input_drive,
    make_rng,
    onehot,
)
from pipeline.models.eqspike.model import EqSpikeModel
from pipeline.models.eqspike.rule import spike_rule
from pipeline.models.eqspike.schedule import (
    count_phase,
    evaluate,
    make_engine,
    predict,
    read_out,
    record_raster,
    simulate_learning,
    train_batch,
    uses_compiled,
)

__all__ = ["ArrayEngine", "EqSpikeConfig", "EqSpikeModel", "INPUT_LAYERS", "Layer", "PRE_FACTORS", "PhaseResult", "SpikeDynamics",
           "Window", "active_inputs", "count_phase", "encode_input", "evaluate", "initial_state", "input_drive",
           "make_engine", "make_rng", "onehot", "predict", "read_out", "record_raster", "simulate_learning",
           "spike_rule", "step", "train_batch", "uses_compiled"]
