"""Is the spike-driven update an unbiased estimate of rate-based EP's, and of the gradient?

On the same weights and batch, three weight changes per layer:

- ``eqspike``: EqSpike's update (``eqspike.train_batch``, symmetric nudging), averaged over R spike
  realisations. Sigma-delta coding is deterministic, so a realisation draws the initial phase of
  every accumulator (input pixels included) uniformly in [0, theta): the spike trains shift, the
  rates do not. (Bernoulli neurons would draw their spikes instead.)
- ``rate``: rate-based EP's update with the same T, K, beta and nudging, the states themselves
  taking the place of the spikes and traces (``ep.train_batch``, array engine, float64).
- ``gradient``: minus the gradient of L = 1/2 ||y - s_L[T]||^2 by backpropagation through the T
  steps of the rate-based free phase (``bptt_gradient``), scaled like the updates.

Reported per layer: the cosine between each pair and the relative norm ||a - b|| / ||b||, as a
function of R (how the average converges) and of beta. The same-step term: S_j[t] ds_i[t]
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


def check(params: Params, x, y, dyn: eqspike.SpikeDynamics, lr: Sequence[float], realisations: Sequence[int],
          seed: int) -> dict:
    """The comparisons at one beta: EqSpike averaged over each R of ``realisations`` (running
    average of the same draws) against rate EP and the gradient; rate EP against the gradient;
    the lagged rule (no same-step term) at the largest R."""
    params = Params([w.astype(np.float64) for w in params.W], [v.astype(np.float64) for v in params.b])
    x, y = x.astype(np.float64), y.astype(np.float64)
    R = max(realisations)
    spikes = eqspike_update(params, x, y, dyn, lr, R, seed)
    lagged = mean_update(eqspike_update(params, x, y, dyn, lr, R, seed, lagged=True))
    rate = rate_update(params, x, y, dyn, lr)
    grad = bptt_gradient(params, x, y, dyn.T, dyn.activation)
    descent = [-g * np.linalg.norm(r) / max(np.linalg.norm(g), 1e-30) for g, r in zip(grad, rate)]
    return {
        "beta": dyn.beta,
        "by_realisations": {int(r): {"vs_rate": compare(mean_update(spikes[:r]), rate),
                                     "vs_gradient": compare(mean_update(spikes[:r]), descent)} for r in realisations},
        "single_realisation_vs_rate": compare(spikes[0], rate),
        "rate_vs_gradient": compare(rate, descent),
        "lagged_vs_rate": compare(lagged, rate),
        "same_step_term_relative": [float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))
                                    for a, b in zip(mean_update(spikes), lagged)],
    }


def study(cfg: eqspike.EqSpikeConfig, bc: BiasCfg, data, trained: Params, seed: int) -> dict:
    """``check`` on the first ``bc.batch_size`` training examples, at initialisation (seed
    ``seed``) and with the ``trained`` weights, for every beta of ``bc.betas``."""
    from pipeline.core.network import init_params

    x = data.x_train[: bc.batch_size].astype(np.float64)
    y = np.eye(cfg.sizes[-1])[data.y_train[: bc.batch_size]]
    weights = {"initialisation": init_params(cfg.sizes, seed, np, "float64"), "trained": trained}
    base = replace(cfg, engine="array")
    results = {}
    for name, params in weights.items():
        for beta in bc.betas:
            res = check(params, x, y, replace(base, beta=beta), list(cfg.lr), bc.realisations, bc.seed)
            results[f"{name}, beta {beta:g}"] = res
            top = res["by_realisations"][max(bc.realisations)]["vs_rate"]
            print(f"{name}, beta {beta:g}: cosine with rate EP after {max(bc.realisations)} realisations "
                  + ", ".join(f"W{l} {c['cosine']:.3f}" for l, c in enumerate(top)))
    return results


def flat_metrics(results: dict, R: int) -> dict[str, float]:
    """``<weights>.beta<b>.W<l>.cosine_rate`` (after R realisations), ``.cosine_rate_1`` (one),
    ``.cosine_gradient``, ``.rate_cosine_gradient``, ``.same_step_relative``."""
    out = {}
    for name, res in results.items():
        key = name.replace(", beta ", ".beta")
        for l, c in enumerate(res["by_realisations"][R]["vs_rate"]):
            out[f"{key}.W{l}.cosine_rate"] = c["cosine"]
            out[f"{key}.W{l}.cosine_rate_1"] = res["single_realisation_vs_rate"][l]["cosine"]
            out[f"{key}.W{l}.cosine_gradient"] = res["by_realisations"][R]["vs_gradient"][l]["cosine"]
            out[f"{key}.W{l}.rate_cosine_gradient"] = res["rate_vs_gradient"][l]["cosine"]
            out[f"{key}.W{l}.same_step_relative"] = res["same_step_term_relative"][l]
    return out


def figure(results: dict, path) -> None:
    """Cosine with rate EP's update against the number of realisations averaged, per layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_layers = len(next(iter(results.values()))["rate_vs_gradient"])
    fig, axes = plt.subplots(1, n_layers, figsize=(6 * n_layers, 4.2), squeeze=False)
    for l in range(n_layers):
        ax = axes[0][l]
        for name, res in results.items():
            rs = sorted(int(r) for r in res["by_realisations"])
            ax.plot(rs, [res["by_realisations"][r]["vs_rate"][l]["cosine"] for r in rs], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("spike realisations averaged (random accumulator phases)")
        ax.set_ylabel("cosine with rate-based EP's update")
        ax.set_title(f"W{l} ({'input' if l == 0 else 'hidden'} synapses)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Is the spike-driven update an unbiased estimate of rate-based EP's? (one batch)")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
