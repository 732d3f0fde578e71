"""Is the spike-driven update an unbiased estimate of rate-based EP's, and of the gradient?

On the same weights and batch, these weight changes per layer:

- ``spikes``: EqSpike's update as it is trained (``eqspike.train_batch``, symmetric nudging, the
  sigma-delta accumulators starting at zero): the headline.
- ``same dynamics, rates``: the same network, leak, synaptic trace, phases and rule with every
  spike replaced by its rate s / theta (the ``rate`` neuron model): the cosine of ``spikes``
  with it isolates what the spikes add, nothing else.
- ``random phases``: EqSpike's update averaged over R realisations whose accumulators start at
  uniform random phases in [0, theta) (input pixels included): the spike trains shift, the rates
  do not. Training never does this; it shows whether averaging over spike timings removes the
  difference. (Bernoulli neurons would draw their spikes instead.)
- ``rate EP``: prototypical rate-based EP with the same T, K, beta and nudging (no leak, no
  trace; ``ep.train_batch``, array engine, float64).
- ``gradient``: minus the gradient of L = 1/2 ||y - s_L[T]||^2 by backpropagation through the T
  steps of the rate-based free phase (``bptt_gradient``), scaled like the updates.

The headline comparisons run on ``n_batches`` training batches at EqSpike's beta, at
initialisation and with the trained raw weights, and report the mean, spread and 95 % interval
over batches; the R and beta sweeps (random phases) run on the first batch. Reported per
layer: the cosine between each pair and the relative norm ||a - b|| / ||b||. The same-step term: S_j[t] ds_i[t]
contains S_j[t]'s own effect on s_i[t+1] (through the trace, alpha W_ij rho'); the ``lagged``
variant pairs ds_i[t] with S_j[t-1] instead, which has no such term: the difference of the two
measures what the term leaves after symmetric nudging.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from pipeline.core.network import Params, copy_params
from pipeline.core.neuron import rho
from pipeline.core.schema import opt, req
from pipeline.models import ep, eqspike


@dataclass(frozen=True, kw_only=True)
class BiasOutCfg:
    metrics: str = opt("results/flat/bias.json")  # flat numbers (MLflow); the headline is metrics/
    detail: str = opt("results/bias.json")
    figure_png: str = opt("plots/bias.png")


@dataclass(frozen=True, kw_only=True)
class BiasCfg:
    """Bias check of the spike-driven rule against rate-based EP and the gradient."""

    batch_size: int = req(ge=1)
    n_batches: int = req(ge=2)  # the headline comparisons: this many training batches, with their spread
    betas: list[float] = req(min_len=1, gt=0)
    realisations: list[int] = req(min_len=1, ge=1)
    seed: int = req(ge=0)
    out: BiasOutCfg = opt(BiasOutCfg())




def delta(params: Params, update) -> list:
    """The change of every weight matrix that ``update(copy)`` makes."""
    p = copy_params(params)
    update(p)
    return [a - b for a, b in zip(p.W, params.W)]


class PhasedEngine(eqspike.ArrayEngine):
    """The array engine with sigma-delta accumulators started at random phases (one realisation)."""

    def __init__(self, params, x, steps, dyn, rng=None, phase_rng=None):
        self.params, self.dyn, self.rng = params, dyn, rng
        self.B = x.shape[0]
        self.active = eqspike.active_inputs(x)
        theta = dyn.neuron.threshold
        q = x[:, self.active] / theta
        phase = phase_rng.random(q.shape)
        k = np.arange(steps + 1, dtype=x.dtype).reshape(-1, 1, 1)
        counts = np.floor(k * q + phase)
        self.spikes_in = counts[1:] - counts[:-1]
        alpha = dyn.neuron.alpha
        lag = np.arange(steps)[:, None] - np.arange(steps)[None, :]
        filt = np.where(lag >= 0, alpha * (1.0 - alpha) ** np.maximum(lag, 0), 0.0)
        self.traces_in = (filt @ self.spikes_in.reshape(steps, -1)).reshape(self.spikes_in.shape)
        self.drive = eqspike.input_drive(params, self.traces_in, self.active)
        self.phase_rng = phase_rng

    def initial_state(self):
        state = eqspike.initial_state(self.params, self.B)
        theta = self.dyn.neuron.threshold
        return [eqspike.Layer(l.s, self.phase_rng.random(l.a.shape) * theta, l.r) for l in state]


def eqspike_update(params: Params, x, y, dyn: eqspike.SpikeDynamics, lr: Sequence[float], realisations: int,
                   seed: int, lagged: bool = False) -> list[list]:
    """EqSpike's weight change for each of ``realisations`` random-phase realisations."""
    out = []
    for r in range(realisations):
        phase_rng = np.random.default_rng([seed, r])

        def phased(p, xx, steps, d, rng=None, phase_rng=phase_rng):
            return PhasedEngine(p, xx, steps, d, rng, phase_rng)

        rule = lagged_rule if lagged else eqspike.spike_rule
        out.append(delta(params, lambda p, phased=phased, rule=rule: eqspike.train_batch(
            p, x, y, replace(dyn, engine="array"), lr, engine=phased, rule=rule)))
    return out


def lagged_rule(params, plus, minus, scale, active, minus_weight=1.0):
    """The rule with the pre factor of the previous step (S[t-1] ds[t]): no same-step term."""
    def lag(win):
        pre = [np.concatenate([np.zeros_like(p[:1]), p[:-1]]) for p in win.pre]
        pre_in = np.concatenate([np.zeros_like(win.pre_in[:1]), win.pre_in[:-1]])
        return win._replace(pre=pre, pre_in=pre_in)

    eqspike.spike_rule(params, lag(plus), lag(minus), scale, active, minus_weight)


def spike_update(params: Params, x, y, dyn: eqspike.SpikeDynamics, lr: Sequence[float]) -> list:
    """EqSpike's weight change as trained: accumulators from zero (array engine)."""
    return delta(params, lambda p: eqspike.train_batch(p, x, y, replace(dyn, engine="array"), lr))


def same_dynamics_rate_update(params: Params, x, y, dyn: eqspike.SpikeDynamics, lr: Sequence[float]) -> list:
    """The same dynamics and rule with rates in place of spikes (the ``rate`` neuron model)."""
    rate_dyn = replace(dyn, engine="array", neuron=replace(dyn.neuron, model="rate"))
    return delta(params, lambda p: eqspike.train_batch(p, x, y, rate_dyn, lr))


def rate_update(params: Params, x, y, dyn: eqspike.SpikeDynamics, lr: Sequence[float]) -> list:
    """Rate-based EP's weight change with EqSpike's T, K, beta and nudging (float64, array engine)."""
    rdyn = ep.Dynamics(T=dyn.T, K=dyn.K, beta=dyn.beta, nudge=dyn.nudge, nudge_placement="outside",
                       activation=dyn.activation, rule="ep", engine="array")
    target = 2.0 * y - 1.0
    return delta(params, lambda p: ep.train_batch(p, x, target, rdyn, lr))


def bptt_gradient(params: Params, x, y, T: int, activation: str = "sigmoid") -> list:
    """dL/dW of L = 1/2 sum_batch ||y - s_L[T]||^2 through the T synchronous free steps of the
    rate dynamics s_l[t+1] = rho(s_{l-1}[t] W_l + b_l + s_{l+1}[t] W_{l+1}^T), from s = 0."""
    W, b = params
    L = len(W)
    s = [np.zeros((x.shape[0], w.shape[1])) for w in W]
    history = []  # (states s[t], pre-activations v[t]) per step
    for _ in range(T):
        v = []
        for l in range(L):
            below = x if l == 0 else s[l - 1]
            vl = below @ W[l] + b[l]
            if l + 1 < L:
                vl = vl + s[l + 1] @ W[l + 1].T
            v.append(vl)
        history.append((s, v))
        s = [rho(vl, activation) for vl in v]
    dW = [np.zeros_like(w) for w in W]
    ds = [np.zeros_like(sl) for sl in s]
    ds[-1] = s[-1] - y
    for s_t, v_t in reversed(history):
        dv = []
        for l in range(L):
            r = rho(v_t[l], activation)
            deriv = 4.0 * r * (1.0 - r) if activation == "sigmoid" else ((v_t[l] > 0) & (v_t[l] < 1)).astype(float)
            dv.append(ds[l] * deriv)
        for l in range(L):
            below = x if l == 0 else s_t[l - 1]
            dW[l] += below.T @ dv[l]
            if l + 1 < L:
                dW[l + 1] += dv[l].T @ s_t[l + 1]
        ds = [np.zeros_like(sl) for sl in s_t]
        for l in range(L):
            if l + 1 < L:
                ds[l] += dv[l + 1] @ W[l + 1].T
            if l > 0:
                ds[l] += dv[l - 1] @ W[l]
    return dW


def compare(a: Sequence, b: Sequence) -> list[dict]:
    """Per layer: cosine of a and b, and ||a - b|| / ||b||."""
    out = []
    for x, y in zip(a, b):
        nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
        cos = float((x * y).sum() / (nx * ny)) if nx > 0 and ny > 0 else float("nan")
        out.append({"cosine": cos, "relative_norm": float(np.linalg.norm(x - y) / ny) if ny > 0 else float("nan")})
    return out


def mean_update(updates: Sequence[list]) -> list:
    return [sum(u[l] for u in updates) / len(updates) for l in range(len(updates[0]))]


def as_float64(params: Params) -> Params:
    """A float64 copy of the weights (the check compares updates to ~1e-16, not float32's 1e-7)."""
    return Params([w.astype(np.float64) for w in params.W], [v.astype(np.float64) for v in params.b])


def scaled_descent(grad, rate) -> list:
    """The descent direction -grad scaled, per layer, to the norm of rate EP's update: a reference
    of the same size, so that the comparison reads direction and relative size."""
    return [-g * np.linalg.norm(r) / max(np.linalg.norm(g), 1e-30) for g, r in zip(grad, rate)]


def check(params: Params, x, y, dyn: eqspike.SpikeDynamics, lr: Sequence[float], realisations: Sequence[int],
          seed: int) -> dict:
    """The comparisons at one beta: EqSpike averaged over each R of ``realisations`` (running
    average of the same draws) against rate EP and the gradient; rate EP against the gradient;
    the lagged rule (no same-step term) at the largest R."""
    params = as_float64(params)
    x, y = x.astype(np.float64), y.astype(np.float64)
    R = max(realisations)
    spikes = eqspike_update(params, x, y, dyn, lr, R, seed)
    lagged = mean_update(eqspike_update(params, x, y, dyn, lr, R, seed, lagged=True))
    rate = rate_update(params, x, y, dyn, lr)
    same = same_dynamics_rate_update(params, x, y, dyn, lr)
    grad = bptt_gradient(params, x, y, dyn.T, dyn.activation)
    descent = scaled_descent(grad, rate)
    return {
        "beta": dyn.beta,
        "by_realisations": {int(r): {"vs_rate": compare(mean_update(spikes[:r]), rate),
                                     "vs_same_dynamics_rate": compare(mean_update(spikes[:r]), same),
                                     "vs_gradient": compare(mean_update(spikes[:r]), descent)} for r in realisations},
        "single_realisation_vs_rate": compare(spikes[0], rate),
        "rate_vs_gradient": compare(rate, descent),
        "lagged_vs_rate": compare(lagged, rate),
        "same_step_term_relative": [float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))
                                    for a, b in zip(mean_update(spikes), lagged)],
    }


COMPARISONS = ("spikes_vs_same_dynamics_rate", "spikes_vs_rate_ep", "spikes_vs_gradient",
               "same_dynamics_rate_vs_gradient", "same_dynamics_rate_vs_rate_ep", "rate_ep_vs_gradient")


def headline(params: Params, batches, dyn: eqspike.SpikeDynamics, lr: Sequence[float]) -> dict:
    """The trained case on every batch of ``batches`` ((x, y) pairs): per comparison and layer,
    the cosine per batch and its summary over batches (mean, std, 95 % interval)."""
    from pipeline.analysis import stats

    params = as_float64(params)
    per_batch: dict[str, list[list[float]]] = {c: [] for c in COMPARISONS}
    for x, y in batches:
        x, y = x.astype(np.float64), y.astype(np.float64)
        spikes = spike_update(params, x, y, dyn, lr)
        same = same_dynamics_rate_update(params, x, y, dyn, lr)
        rate = rate_update(params, x, y, dyn, lr)
        grad = bptt_gradient(params, x, y, dyn.T, dyn.activation)
        descent = scaled_descent(grad, rate)
        pairs = {"spikes_vs_same_dynamics_rate": (spikes, same), "spikes_vs_rate_ep": (spikes, rate),
                 "spikes_vs_gradient": (spikes, descent), "same_dynamics_rate_vs_gradient": (same, descent),
                 "same_dynamics_rate_vs_rate_ep": (same, rate), "rate_ep_vs_gradient": (rate, descent)}
        for name, (a, b) in pairs.items():
            per_batch[name].append([c["cosine"] for c in compare(a, b)])
    n_layers = len(params.W)
    return {name: [{"per_batch": [v[l] for v in values], **stats.summary([v[l] for v in values])}
                   for l in range(n_layers)] for name, values in per_batch.items()}


def study(cfg: eqspike.EqSpikeConfig, bc: BiasCfg, data, trained: Params, seed: int) -> dict:
    """At initialisation (seed ``seed``) and with the ``trained`` raw weights: the headline
    comparisons on the first ``bc.n_batches`` training batches of ``bc.batch_size`` at EqSpike's
    beta, and ``check`` (random phases, every beta of ``bc.betas``) on the first batch."""
    from pipeline.core.network import init_params

    B, n_classes = bc.batch_size, cfg.sizes[-1]
    batches = [(data.x_train[i * B:(i + 1) * B], np.eye(n_classes)[data.y_train[i * B:(i + 1) * B]])
               for i in range(bc.n_batches)]
    if len(batches[-1][0]) < B:
        raise ValueError(f"bias.n_batches: {bc.n_batches} batches of {B} need {bc.n_batches * B} training examples, "
                         f"the data has {len(data.x_train)}")
    weights = {"initialisation": init_params(cfg.sizes, seed, np, "float64"), "trained": trained}
    base = replace(cfg, engine="array")
    results: dict = {"headline": {}, "random_phases": {}}
    for name, params in weights.items():
        head = headline(params, batches, base, list(cfg.lr))
        results["headline"][name] = head
        print(f"{name}, beta {cfg.beta:g}, {bc.n_batches} batches: cosine of the spikes with the same dynamics in "
              "rates " + ", ".join(f"W{l} {c['mean']:.3f} +- {c['std']:.3f}"
                                   for l, c in enumerate(head["spikes_vs_same_dynamics_rate"])))
        x, y = batches[0]
        for beta in bc.betas:
            res = check(params, x, y, replace(base, beta=beta), list(cfg.lr), bc.realisations, bc.seed)
            results["random_phases"][f"{name}, beta {beta:g}"] = res
    return results


def flat_metrics(results: dict, R: int) -> dict[str, float]:
    """``<weights>.W<l>.<comparison>`` (headline: mean cosine over batches, ``..._ci_low``), and of
    the random-phase check ``<weights>.beta<b>.W<l>.cosine_rate`` (after R realisations),
    ``.cosine_rate_1`` (one), ``.cosine_same_dynamics``, ``.cosine_gradient``, ``.same_step_relative``."""
    out = {}
    for name, head in results["headline"].items():
        for comparison, layers in head.items():
            for l, c in enumerate(layers):
                out[f"{name}.W{l}.{comparison}"] = c["mean"]
                if c["ci_low"] is not None:
                    out[f"{name}.W{l}.{comparison}_ci_low"] = c["ci_low"]
    for name, res in results["random_phases"].items():
        key = name.replace(", beta ", ".beta")
        for l, c in enumerate(res["by_realisations"][R]["vs_rate"]):
            out[f"{key}.W{l}.cosine_rate"] = c["cosine"]
            out[f"{key}.W{l}.cosine_rate_1"] = res["single_realisation_vs_rate"][l]["cosine"]
            out[f"{key}.W{l}.cosine_same_dynamics"] = res["by_realisations"][R]["vs_same_dynamics_rate"][l]["cosine"]
            out[f"{key}.W{l}.cosine_gradient"] = res["by_realisations"][R]["vs_gradient"][l]["cosine"]
            out[f"{key}.W{l}.rate_cosine_gradient"] = res["rate_vs_gradient"][l]["cosine"]
            out[f"{key}.W{l}.same_step_relative"] = res["same_step_term_relative"][l]
    return out


def figure(results: dict, path) -> None:
    """Left: the headline cosines per layer (trained raw weights and initialisation, mean and 95 %
    interval over batches). Right: the random-phase check, cosine with rate-based EP's update and
    with the same dynamics in rates against the number of realisations averaged (first batch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    head = results["headline"]
    n_layers = len(next(iter(head.values()))["spikes_vs_same_dynamics_rate"])
    fig, axes = plt.subplots(1, 1 + n_layers, figsize=(6 * (1 + n_layers), 4.6), squeeze=False)
    ax = axes[0][0]
    labels = [c.replace("_vs_", " vs\n").replace("_", " ") for c in COMPARISONS]
    width = 0.8 / (len(head) * n_layers)
    for k, (name, h) in enumerate(head.items()):
        for l in range(n_layers):
            i = k * n_layers + l
            means = [h[c][l]["mean"] for c in COMPARISONS]
            err = [[m - (h[c][l]["ci_low"] or m) for m, c in zip(means, COMPARISONS)],
                   [(h[c][l]["ci_high"] or m) - m for m, c in zip(means, COMPARISONS)]]
            ax.bar(np.arange(len(COMPARISONS)) + (i - (len(head) * n_layers - 1) / 2) * width, means, width, yerr=err,
                   capsize=2, label=f"{name}, W{l}")
    ax.set_xticks(np.arange(len(COMPARISONS)), labels, fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("cosine (mean over batches, 95 % CI)")
    ax.set_title("as trained: accumulators from zero")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    phases = results["random_phases"]
    for l in range(n_layers):
        ax = axes[0][1 + l]
        for name, res in phases.items():
            rs = sorted(int(r) for r in res["by_realisations"])
            ax.plot(rs, [res["by_realisations"][r]["vs_rate"][l]["cosine"] for r in rs], marker="o",
                    label=f"{name}: vs rate EP")
            ax.plot(rs, [res["by_realisations"][r]["vs_same_dynamics_rate"][l]["cosine"] for r in rs], marker="s",
                    ls="--", label=f"{name}: vs same dynamics, rates")
        ax.set_xscale("log", base=2)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("spike realisations averaged (random accumulator phases)")
        ax.set_ylabel("cosine")
        ax.set_title(f"W{l} ({'input' if l == 0 else 'hidden'} synapses), first batch")
        ax.grid(alpha=0.3)
    axes[0][1].legend(fontsize=6)
    fig.suptitle("Is the spike-driven update an unbiased estimate of the rate-based one?")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
