"""The spike-driven learning rule of EqSpike (``spike_rule``)."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.core.backend import array_module
from pipeline.core.network import Params
from pipeline.models.eqspike.dynamics import Window


def spike_rule(params: Params, plus: Window, minus: Window, scale: Sequence[float], active,
               minus_weight: float = 1.0) -> None:
    """The spike-driven rule, applied as ``rule(plus) - minus_weight * rule(minus)``:

        dW_l = scale_l sum_t sum_batch (P_{l-1}[t]^T ds_l[t] + ds_{l-1}[t]^T P_l[t])
        db_l = scale_l sum_t sum_batch ds_l[t]

    P is the pre factor (the spike S, or the trace r), ds = s[t+1] - s[t]; the input layer has
    no ds, so its synapses take the first term only, ``W_0 += scale_0 sum_t P_in^T ds_1``.
    ``scale_l`` = eta_l / (2 beta B) for symmetric nudging, eta_l / (beta B) otherwise.
    Pixels silent in the whole batch (outside ``active``) have no pre factor: left out.
    """
    W, b = params
    xp = array_module(W[0])
    w = minus_weight
    same_input = plus.start == minus.start  # symmetric: both phases see the same input spikes
    # ---- input synapses ---------------------------------------------------------------------
    if same_input:
        posts = [(plus, scale[0] * (plus.ds[0] - w * minus.ds[0]))]
    else:
        posts = [(plus, scale[0] * plus.ds[0]), (minus, (-scale[0] * w) * minus.ds[0])]
    for win, post in posts:
        if win.in_events is not None:
            win.in_events.apply_input_rule(W[0], win.start, post)
        else:
            k, B, n_in = win.pre_in.shape
            W[0][active] += win.pre_in.reshape(k * B, n_in).T @ post.reshape(k * B, -1)
    # ---- synapses between spiking layers, biases -----------------------------------------
    def stacked(a):
        return a.reshape(-1, a.shape[-1])

    for l in range(1, len(W)):
        delta = xp.zeros_like(W[l])
        for win, sign in ((plus, 1.0), (minus, -w)):
            term = stacked(win.pre[l - 1]).T @ stacked(win.ds[l]) + stacked(win.ds[l - 1]).T @ stacked(win.pre[l])
            delta += sign * term
        W[l] += scale[l] * delta
    for l in range(len(b)):
        diff = plus.ds[l].sum(axis=(0, 1)) - w * minus.ds[l].sum(axis=(0, 1))
        b[l] += scale[l] * diff

