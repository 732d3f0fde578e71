"""What each of a chip's constraints costs EqSpike (issue 23): the ``chip`` config (conf/chip/),
the learning rates chosen per update mode on the validation split (``select``), the rows of the
table trained side by side (``train_rows``) and the table with its figure (``table``).

A row is one setting of ``pipeline.models.eqspike.chip.ChipCfg`` over some seeds: the reference
(``update: batch``, today's loop: batch 20, float weights, the weight average beside the raw
weights), then the chip settings (batch 1 per example or continual, no average, the free phase
rerun, float or b-bit weights). Every row is read with the raw weights and the C1 rule
(``pipeline.analysis.stats``: the interval over seeds and test examples against the paper's
value +- the declared margin); a one-seed row has no interval and says so. Energy per example
(inference and training) comes from the row's own event counts with the C4 chip preset and both
conventions (total, dynamic); memory per synapse is the weight's bits plus the accumulator and
the average a mode keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.analysis import energy as en
from pipeline.analysis.selection import rule
from pipeline.analysis.stats import accuracy_interval, equivalence
from pipeline.core.events import Counts, to_json
from pipeline.core.network import copy_params, init_params
from pipeline.core.schema import Checked, ConfigError, opt, req
from pipeline.models.eqspike.chip import UPDATES, ChipCfg, Net, train_networks
from pipeline.models.eqspike.dynamics import EqSpikeConfig
from pipeline.models.eqspike.model import EqSpikeModel
from pipeline.models.eqspike.schedule import evaluate
from pipeline.models.train import DivergenceError, fit


@dataclass(frozen=True, kw_only=True)
class RowCfg(Checked):
    """One row of the table: a chip setting over some seeds."""

    config_path = "chip.rows[]"

    name: str = req(pattern=r"[a-z0-9_]+")
    update: str = req(choices=UPDATES)
    weight_bits: int | None = opt(None, ge=1, le=16)
    state_bits: int | None = opt(None, ge=1, le=16)
    average: bool = opt(False)
    free_rerun: bool = opt(True)
    seeds: list[int] = req(min_len=1, ge=0)


@dataclass(frozen=True, kw_only=True)
class SelectionCfg(Checked):
    """How the learning rates of every update mode are chosen, with the same budget and rule for
    each: the mode's default learning-rate factor (``defaults[mode]``, eqspike.lr x it) times each
    of ``factors`` (1 first: the default), one seed, the last ``validation`` training examples held
    out, the rule of every model (``selection.rule``) on the raw weights."""

    config_path = "chip.selection"

    factors: list[float] = req(min_len=2, gt=0)
    defaults: dict[str, float] = req(min_len=1)
    seed: int = req(ge=0)
    validation: int = req(ge=1)

    def check(self, path: str) -> None:
        if self.factors[0] != 1:
            raise ConfigError(f"{path}.factors: the first factor is the default itself (1), got {self.factors[0]}")
        for mode, v in self.defaults.items():
            if mode not in UPDATES:
                raise ConfigError(f"{path}.defaults.{mode}: not an update mode (one of {UPDATES})")
            if not v > 0:
                raise ConfigError(f"{path}.defaults.{mode}: a learning-rate factor must be > 0, got {v}")


@dataclass(frozen=True, kw_only=True)
class ChipOutCfg:
    selection: str = req(min_len=1)
    rows: str = req(min_len=1)
    table: str = req(min_len=1)
    table_md: str = req(min_len=1)
    figure: str = req(min_len=1)


@dataclass(frozen=True, kw_only=True)
class ChipStudyCfg(Checked):
    """The ``chip`` config: the constraints' shared settings, the selection, the rows."""

    config_path = "chip"

    weight_range: float = req(gt=0)  # fixed point: each layer on +- weight_range / sqrt(fan_in)
    # the study's scale (None: eqspike.epochs, every training example): every row and the selection
    epochs: int | None = opt(None, ge=1)
    n_train: int | None = opt(None, ge=1)
    selection: SelectionCfg = req()
    rows: list[RowCfg] = req(min_len=1)
    out: ChipOutCfg = req()

    def check(self, path: str) -> None:
        names = [r.name for r in self.rows]
        if len(set(names)) != len(names):
            raise ConfigError(f"{path}.rows: the same name twice ({names})")
        for r in self.rows:
            if r.update not in self.selection.defaults:
                raise ConfigError(f"{path}.selection.defaults: no default learning-rate factor for update {r.update} "
                                  f"(row {r.name})")
        if self.rows[0].update != "batch":
            raise ConfigError(f"{path}.rows[0]: the first row is the reference (update: batch), got "
                              f"{self.rows[0].update}")
        for i, r in enumerate(self.rows):
            try:
                self.setting(r, 1.0)
            except ConfigError as exc:
                raise ConfigError(f"{path}.rows[{i}] ({r.name}): {exc}") from None

    def setting(self, row: RowCfg, lr_scale: float) -> ChipCfg:
        return ChipCfg(update=row.update, weight_bits=row.weight_bits, state_bits=row.state_bits,
                       weight_range=self.weight_range, average=row.average, free_rerun=row.free_rerun, lr_scale=lr_scale)


def select(study: ChipStudyCfg, dyn: EqSpikeConfig, data, dtype: str, progress: bool = True) -> dict:
    """Per update mode of the rows, the learning-rate factor chosen on the validation split: its
    default x every factor of ``study.selection.factors``, one seed, float weights, no average
    (batch: today's loop, one candidate after another; example and continual: side by side, the
    free phase rerun), the rule of every model on the raw weights' validation accuracy after the
    last epoch. A candidate that diverges loses. ``data`` holds the validation split."""
    if data.x_val is None:
        raise ValueError("chip selection: the data need a validation split (data.validation > 0)")
    sel = study.selection
    out = {"rule": "the highest validation accuracy (raw weights, last epoch) wins unless it beats the default "
                   "(factor 1) by no more than one standard error of the default's estimate; a diverged candidate "
                   "loses", "factors": list(sel.factors),
           "n_val": int(len(data.y_val)), "seed": sel.seed, "epochs": dyn.epochs, "modes": {}}
    for mode in UPDATES:
        if not any(r.update == mode for r in study.rows):
            continue
        scales = [sel.defaults[mode] * f for f in sel.factors]
        if mode == "batch":
            accs = [_batch_candidate(dyn, s, data, sel.seed, dtype, progress) for s in scales]
        else:
            nets = [Net(sel.seed, ChipCfg(update=mode, weight_bits=None, weight_range=study.weight_range,
                                          average=False, free_rerun=True, lr_scale=s)) for s in scales]
            _, records, _, _ = train_networks(dyn, nets, data, dtype, progress=progress)
            accs = [r[-1].get("val_accuracy") for r in records]
        out["modes"][mode] = choose(scales, accs, len(data.y_val))
    return out


def choose(scales: Sequence[float], accs: Sequence[float | None], n_val: int) -> dict:
    """The rule over one mode's candidates (the default first; None: diverged)."""
    if accs[0] is None:
        raise ValueError(f"chip selection: the default learning rate diverged (lr_scale {scales[0]})")
    win, best, se = rule(accs, n_val)  # the rule of every model (pipeline/analysis/selection.py)
    why = ("the default is best" if best == 0 else
           f"lr_scale {scales[best]:g} is within one standard error of the default" if win == 0 else
           f"lr_scale {scales[best]:g} beats the default by {100 * (accs[best] - accs[0]):.2f} points "
           f"(> {100 * se:.2f})")
    return {"lr_scale": scales[win], "standard_error": se, "why": why,
            "at_edge": win in (int(np.argmin(scales)), int(np.argmax(scales))),
            "candidates": [{"lr_scale": s, "val_accuracy": a, **({"diverged": True} if a is None else {})}
                           for s, a in zip(scales, accs)]}


def _batch_candidate(dyn: EqSpikeConfig, lr_scale: float, data, seed: int, dtype: str, progress: bool):
    """Today's loop at eqspike.lr x ``lr_scale``: its last validation accuracy (None: diverged)."""
    d = replace(dyn, lr=[eta * lr_scale for eta in dyn.lr])
    try:
        history = fit(EqSpikeModel(d, np, seed, d.eval_batch_size), init_params(d.sizes, seed, np, dtype), data, d,
                      seed, progress=progress)
    except DivergenceError:
        return None
    return history[-1]["val_accuracy"]


def _reference(row: RowCfg, dyn: EqSpikeConfig, data, dtype: str, ema_decay: float, progress: bool,
               lr_scale: float) -> list[dict]:
    """Today's loop for each seed of the reference row (``fit``) at eqspike.lr x ``lr_scale``, the
    test set read once."""
    dyn = replace(dyn, lr=[eta * lr_scale for eta in dyn.lr])
    results = []
    for seed in row.seeds:
        model = EqSpikeModel(dyn, np, seed, dyn.eval_batch_size)
        params = init_params(dyn.sizes, seed, np, dtype)
        ema = copy_params(params) if row.average and ema_decay > 0 else None
        history = fit(model, params, data, dyn, seed, 0, ema, ema_decay if ema is not None else 0.0,
                      progress=progress)
        results.append({**_read_test(dyn, params, ema, data, seed, history, history[-1]["events"]["train"]),
                        "lr_scale": lr_scale})
    return results


def _read_test(dyn, params, ema, data, seed, history, train_events) -> dict:
    x, y = np.asarray(data.x_test, dtype=params.W[0].dtype), np.asarray(data.y_test)
    counts = Counts()
    raw = evaluate(params, x, y, dyn, dyn.eval_batch_size, counts=counts, keep=True)
    out = {"seed": seed, "test_accuracy": raw["accuracy"], "predicted": raw["predicted"],
           "correct": (raw["predicted"] == y).astype(np.int8),
           "train_accuracy": history[-1]["train_accuracy"], "seconds": sum(r["seconds"] for r in history),
           "events": {"train": train_events, "inference": to_json(counts.per_example(len(y)))}}
    if ema is not None:
        out["test_accuracy_averaged"] = evaluate(ema, x, y, dyn, dyn.eval_batch_size)["accuracy"]
    return out


def train_rows(study: ChipStudyCfg, dyn: EqSpikeConfig, data, selection: dict, dtype: str, ema_decay: float,
               progress: bool = True) -> dict:
    """Train every row (the reference with today's loop; every chip row's networks side by side
    in one run) and read each network's test set once. ``selection``: ``select``'s result."""
    out = {}
    chip_nets, owners = [], []
    for row in study.rows:
        mode = selection["modes"].get(row.update)
        if mode is None:
            raise ValueError(f"chip row {row.name}: no learning rate chosen for update {row.update} (rerun the selection)")
        if row.update == "batch":
            out[row.name] = _reference(row, dyn, data, dtype, ema_decay, progress, mode["lr_scale"])
            continue
        for seed in row.seeds:
            chip_nets.append(Net(seed, study.setting(row, mode["lr_scale"])))
            owners.append(row.name)
    if chip_nets:
        if len({n.chip.average for n in chip_nets}) > 1:
            raise ConfigError("chip.rows: the chip rows (update example or continual) either all keep the weight "
                              "average or none")
        nw, records, ema, counts = train_networks(dyn, chip_nets, data, dtype, ema_decay, progress)
        diverged = [f"{name} seed {net.seed}" for net, name, r in zip(chip_nets, owners, records) if r[-1].get("diverged")]
        if diverged:
            raise FloatingPointError(f"chip training diverged: {diverged} (lower chip.selection.factors)")
        for i, (net, name) in enumerate(zip(chip_nets, owners)):
            params = nw.params(i)
            res = _read_test(dyn, params, ema.params(i) if ema else None, data, net.seed, records[i],
                             to_json(counts[i].per_example(len(data.y_train))))
            res["lr_scale"] = net.chip.lr_scale
            out.setdefault(name, []).append(res)
    return out


def _energy(row: RowCfg, runs: Sequence[dict], dyn: EqSpikeConfig, preset, mac_pj: float) -> dict:
    """Joules per example of the row's first seed's events (total and dynamic), inference and
    training, with the chip preset; the free phase rerun or stored as the row says."""
    ev = runs[0]["events"]
    variants = en.neuromorphic_variants(ev, dyn.sizes, 2, preset, mac_pj, dyn.T, dyn.K)
    name = f"{en.INPUT_MODES[0]}, free state {en.STATE_MODES[1] if row.free_rerun else en.STATE_MODES[0]}"
    v = variants[name]
    return {"variant": name, **{f"{task}_{conv}_j": v[task][f"{conv}_j"] for task in ("inference", "training")
                                for conv in en.CONVENTIONS}}


def table(study: ChipStudyCfg, rows: dict, dyn: EqSpikeConfig, preset, preset_name: str, mac_pj: float,
          paper: float, margin: float, selection: dict, n_train: int) -> dict:
    """The table: per row its setting, test accuracy of the raw weights (mean, interval and the
    C1 verdict with ``margin``; one seed: no interval), the average beside it where kept, the
    accuracy cost against the reference (paired by seed where the seeds are shared), energy per
    example and memory per synapse."""
    ref_row = study.rows[0]
    ref = {r["seed"]: r for r in rows[ref_row.name]}
    out_rows = []
    for row in study.rows:
        runs = rows[row.name]
        correct = np.stack([r["correct"] for r in runs])
        iv = accuracy_interval(correct)
        shared = [r for r in runs if r["seed"] in ref]
        cost = None
        if row is not ref_row and shared:
            diff = np.stack([ref[r["seed"]]["correct"].astype(np.float64) - r["correct"] for r in shared])
            gap = accuracy_interval(diff) if len(shared) > 1 else {"mean": float(diff.mean()), "ci_low": None,
                                                                  "ci_high": None}
            cost = {"seeds": [r["seed"] for r in shared], "mean": gap["mean"], "ci_low": gap["ci_low"],
                    "ci_high": gap["ci_high"]}
        setting = study.setting(row, runs[0].get("lr_scale", 1.0))
        entry = {"name": row.name, "update": row.update, "weight_bits": row.weight_bits,
                 "state_bits": row.state_bits, "average": row.average,
                 "free_rerun": row.free_rerun, "seeds": [r["seed"] for r in runs], "lr_scale": setting.lr_scale,
                 "test_accuracy": iv["mean"], "ci_low": iv["ci_low"], "ci_high": iv["ci_high"],
                 "verdict": equivalence(iv, paper, margin), "per_seed": [r["test_accuracy"] for r in runs],
                 "cost_vs_reference": cost, "memory_bits_per_synapse": setting.memory_bits(),
                 "energy_per_example": _energy(row, runs, dyn, preset, mac_pj),
                 "train_seconds": [r["seconds"] for r in runs]}
        if "test_accuracy_averaged" in runs[0]:
            entry["test_accuracy_averaged"] = float(np.mean([r["test_accuracy_averaged"] for r in runs]))
        out_rows.append(entry)
    return {"paper": paper, "margin": margin, "preset": preset_name, "epochs": dyn.epochs,
            "n_train": n_train, "n_test": int(len(rows[ref_row.name][0]["correct"])), "rows": out_rows, "selection": selection,
            "rule": "raw weights; interval over seeds and test examples (pipeline.analysis.stats); verdict against "
                    "the paper's value +- the declared C1 margin; cost = reference - row, paired by seed"}


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.2f}"


def markdown(tab: dict) -> str:
    """The table as Markdown (README, REPORT)."""
    lines = ["| row | update | weights | states | average | seeds | test accuracy % (raw) | interval | verdict | cost vs "
             "reference, points | inference µJ (total / dynamic) | training µJ (total / dynamic) | bits per synapse |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in tab["rows"]:
        e = r["energy_per_example"]
        cost = r["cost_vs_reference"]
        cost_s = "" if cost is None else (f"{100 * cost['mean']:.2f}" + (
            f" [{100 * cost['ci_low']:.2f}, {100 * cost['ci_high']:.2f}]" if cost["ci_low"] is not None else ""))
        iv = "" if r["ci_low"] is None else f"[{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]"
        avg = f" (avg {_pct(r['test_accuracy_averaged'])})" if "test_accuracy_averaged" in r else ""
        bits = r["memory_bits_per_synapse"]
        weights = "float32" if r["weight_bits"] is None else f"{r['weight_bits']}-bit"
        update = {"batch": "batch 20", "example": "per example", "continual": "continual"}[r["update"]]
        states = "float32" if r.get("state_bits") is None else f"{r['state_bits']}-bit"
        lines.append(f"| {r['name']} | {update} | {weights} | {states} | {'yes' if r['average'] else 'no'} | "
                     f"{len(r['seeds'])}{'' if len(r['seeds']) > 1 else ' (one seed)'} | {_pct(r['test_accuracy'])}{avg} | "
                     f"{iv} | {r['verdict']} | {cost_s} | {1e6 * e['inference_total_j']:.2f} / "
                     f"{1e6 * e['inference_dynamic_j']:.2f} | {1e6 * e['training_total_j']:.2f} / "
                     f"{1e6 * e['training_dynamic_j']:.2f} | {bits['total']} ({bits['weight']} + {bits['accumulator']}"
                     f" + {bits['average']}) |")
    return "\n".join(lines) + "\n"


def figure(tab: dict, path: Path) -> None:
    """Accuracy (raw weights) against weight bits, one line per update mode; float at the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    float_x = 10
    for update, style in (("example", "o-"), ("continual", "s--")):
        rs = sorted((r for r in tab["rows"] if r["update"] == update and r.get("state_bits") is None),
                    key=lambda r: float_x if r["weight_bits"] is None else r["weight_bits"])
        if not rs:
            continue
        xs = [float_x if r["weight_bits"] is None else r["weight_bits"] for r in rs]
        ys = [100 * r["test_accuracy"] for r in rs]
        lo = [100 * (r["test_accuracy"] - r["ci_low"]) if r["ci_low"] is not None else 0 for r in rs]
        hi = [100 * (r["ci_high"] - r["test_accuracy"]) if r["ci_high"] is not None else 0 for r in rs]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt=style, capsize=3,
                    label={"example": "per example (batch 1)", "continual": "continual (C-EP style)"}[update])
    ref = tab["rows"][0]
    ax.axhline(100 * ref["test_accuracy"], color="grey", lw=1, ls=":", label="reference: batch 20, float32")
    ax.axhline(100 * tab["paper"], color="k", lw=0.8, ls="-.", label=f"paper {100 * tab['paper']:.1f} %")
    ax.set_xticks([2, 4, 6, 8, float_x], ["2", "4", "6", "8", "float32"])
    ax.set_xlabel("weight bits (fixed point, stochastic rounding)")
    ax.set_ylabel("test accuracy % (raw weights)")
    ax.set_title(f"EqSpike as a chip would run it ({tab['epochs']} epochs)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def scaled(study: ChipStudyCfg, dyn: EqSpikeConfig, data_cfg, validation: int = 0):
    """The dynamics and data config at the study's scale (``chip.epochs``, ``chip.n_train``),
    with the last ``validation`` training examples held out (the selection's split; 0: none)."""
    dyn = replace(dyn, epochs=study.epochs or dyn.epochs)
    data_cfg = replace(data_cfg, n_train=study.n_train or data_cfg.n_train, validation=validation)
    data_cfg.check("data")
    return dyn, data_cfg
