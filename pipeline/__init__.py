"""EqSpike reproduction: the science (models, data, energy accounting, analyses), in layers that
import only downwards (docs/architecture.md; checked by import-linter):

    config      the root config: one field per config group, each the library's own type
    analysis    the claims: stats and aggregate, bias, stdp and stdp_study, energy and energy_study, report
    models      the training loop and runs, rate EP, backprop, the EqSpike folder (models/eqspike/)
    data        dataset spec, IDX reading and verification, fetching
    core        typed-config machinery, backend, weights, neuron models, event counts, Numba blocks, I/O

Importing this package is cheap: it loads neither CuPy nor MLflow, Hydra or DVC
(``tests/test_backend.py`` checks it in a fresh interpreter).
"""

__version__ = "0.3.0"
