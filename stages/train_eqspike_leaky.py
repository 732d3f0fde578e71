"""DVC stage ``train_eqspike_leaky``: EqSpike with a leaky state (claim C5's model with memory):
``train_eqspike`` with ``leaky.leak`` as the neuron's leak, ``leaky.pre_factor`` as the rule's
presynaptic factor and ``leaky.out`` as its folders.

    python -m stages.train_eqspike_leaky runtime.seed=0
    python -m stages.train_eqspike_leaky leaky.leak=0.5 leaky.pre_factor=trace
"""

from __future__ import annotations

import sys

from stages.common import stage_main
from stages.train_eqspike import leaky_config, worker

main = stage_main("train_eqspike_leaky", lambda cfg, run: worker(leaky_config(cfg), run))

if __name__ == "__main__":
    sys.exit(main())
