"""EqSpike reproduction: the science (models, data, energy accounting).

Importing this package is cheap: it loads neither CuPy nor MLflow, Hydra or DVC
(``tests/test_backend.py`` checks it in a fresh interpreter).
"""

__version__ = "0.1.0"
